"""Scoring SAE latents the way delphi does, with any explainer (saerand.autointerp.explainers).

Each latent's examples come from delphi (`LatentDataset`: explanation examples drawn from its
pool of activating windows as `explanation_sampling` says, at random by default; test examples by
quantile; non-activating windows); the fuzzing and detection samples
are built by delphi's own scorers (`FuzzingScorer._prepare`, `DetectionScorer._prepare`), so every
explainer scores the very same samples. Results are appended per latent as they
come (`LatentLog`), so a killed job resumes after its last finished latent, and one failed
latent is recorded as failed without stopping the others.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from ..progress import JsonLinesLog
from ..settings import AutointerpSettings
from .delphi_compat import import_delphi

import_delphi()
from delphi.scorers.classifier.detection import DetectionScorer  # noqa: E402
from delphi.scorers.classifier.fuzz import FuzzingScorer  # noqa: E402

SCORERS = {"fuzz": FuzzingScorer, "detection": DetectionScorer}


def token_activation(examples) -> dict[int, float]:
    """Total activation of the latent per token id over `examples` (delphi ActivatingExamples)."""
    totals: dict[int, float] = defaultdict(float)
    for example in examples:
        for token, activation in zip(example.tokens.tolist(), example.activations.tolist()):
            if activation > 0:
                totals[token] += activation
    return dict(totals)


def token_entropy(totals: dict[int, float], examples) -> dict[str, float]:
    """Entropy (nats) of the activation distribution over token ids, and normalised to [0, 1] by
    the largest value the examples allow: every activating position on its own token id."""
    mass = np.array([v for v in totals.values() if v > 0])
    nats = float(-(p := mass / mass.sum()) @ np.log(p)) if len(mass) else float("nan")
    positions = sum(int((example.activations > 0).sum()) for example in examples)
    normalised = nats / math.log(positions) if positions > 1 else 0.0
    return {
        "entropy_nats": nats,
        "entropy_normalised": normalised,
        "activating_positions": positions,
        "distinct_tokens": len(mass),
    }


def scorer_options(scorer: str, settings: AutointerpSettings) -> dict[str, Any]:
    """What delphi's scorer takes from the settings: fuzzing marks tokens above a fraction of the
    example's top activation."""
    return {"threshold": settings.highlight_threshold} if scorer == "fuzz" else {}


def samples(record, scorer: str, settings: AutointerpSettings) -> list:
    """delphi's own samples for `scorer` ('fuzz' or 'detection') of one latent."""
    return SCORERS[scorer](client=None, **scorer_options(scorer, settings))._prepare(record)


def auroc(activating: list[bool], probability: list[float], weights=None) -> float:
    """AUROC of samples (NaN without both classes), as delphi's compute_auc; `weights` per sample."""
    if len(set(np.asarray(activating)[np.asarray(weights) > 0] if weights is not None else activating)) != 2:
        return float("nan")
    return float(roc_auc_score(activating, probability, sample_weight=weights))


def pooled_auroc(
    samples: list[dict[str, Any]], scorer: str, latents: list[int], counts: np.ndarray
) -> tuple[float, np.ndarray]:
    """One AUROC over every sample of every latent that `scorer` scored (the pooled reading of a
    SAE's AUROC, beside the mean of per-latent AUROCs), and its replicates: resample r weighs each
    of latent i's samples counts[r, i] (saerand.intervals.resample_counts over `latents`)."""
    rows = [sample for sample in samples if sample["scorer"] == scorer]
    index = {latent: i for i, latent in enumerate(latents)}
    activating = [sample["activating"] for sample in rows]
    probability = [sample["probability"] for sample in rows]
    owner = np.array([index[sample["latent"]] for sample in rows], dtype=int)
    point = auroc(activating, probability)
    return point, np.array([auroc(activating, probability, weights[owner]) for weights in counts])


class LatentLog(JsonLinesLog):
    """Per-latent results appended as JSON lines, read back on resume (saerand.progress: a torn
    line is skipped); a latent marked `retry` (its requests got no answer) is not done: a rerun
    scores it again."""

    def __init__(self, path: str | Path):
        super().__init__(path, key=lambda entry: entry["latent"], undone=lambda entry: entry.get("retry", False))


def latent_entry(record, explanation: str, rows: dict[str, list[tuple]]) -> dict[str, Any]:
    """One latent's result from any explainer: its explanation, token entropy, the examples shown,
    and per scorer its AUROC, how many samples got no probability (an answer that did not parse),
    and the scored samples (activating, probability, quantile)."""
    entry: dict[str, Any] = {
        "latent": record.latent.latent_index,
        "explanation": explanation,
        **token_entropy(token_activation(record.train), record.train),
        "shown": ["".join(example.str_tokens) for example in record.train],
        "samples": [],
    }
    for scorer, scored in rows.items():
        parsed = [row for row in scored if row[1] is not None]
        entry[f"{scorer}_auroc"] = auroc([a for a, _, _ in parsed], [p for _, p, _ in parsed])
        entry[f"{scorer}_unparsed"] = len(scored) - len(parsed)
        entry["samples"] += [
            {"scorer": scorer, "activating": bool(a), "probability": p, "quantile": d} for a, p, d in parsed
        ]
    return entry


async def score_latents(records: list, score, log: LatentLog, concurrency: int, check=lambda: None) -> None:
    """Score the records not yet in `log`, `concurrency` at a time, each logged as it finishes. A
    latent that fails is logged as failed (to be scored again on a rerun where its error says
    `retry`: its requests got no answer); `check` may stop the job (a server gone), before the
    latent it interrupted is logged, so a rerun scores that latent again."""
    semaphore = asyncio.Semaphore(concurrency)
    progress = tqdm(total=len(records), initial=sum(r.latent.latent_index in log.done for r in records))

    async def one(record):
        async with semaphore:
            try:
                entry = await score(record)
            except Exception as error:  # one bad latent is recorded, not fatal
                entry = {"latent": record.latent.latent_index, "failed": f"{type(error).__name__}: {error}"}
                if getattr(error, "retry", False):
                    entry["retry"] = True
            check()
            log.add(entry)
            progress.update()

    await asyncio.gather(*(one(record) for record in records if record.latent.latent_index not in log.done))
    progress.close()
