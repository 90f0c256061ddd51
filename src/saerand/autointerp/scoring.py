"""Scoring SAE latents the way delphi does, with any explainer, and the token-identity null.

Each latent's examples come from delphi (`LatentDataset`: explanation examples drawn from its
pool of activating windows as `explanation_sampling` says, at random by default; test examples by
quantile; non-activating windows); the fuzzing and detection samples
are built by delphi's own scorers (`FuzzingScorer._prepare`, `DetectionScorer._prepare`), so an
LLM and the null explainer score the very same samples. Results are appended per latent as they
come (`LatentLog`), so a killed job resumes after its last finished latent, and one failed
latent is recorded as failed without stopping the others.

The null explainer needs no LLM: its "explanation" is the total activation of the latent per token
in the explanation examples, and a sample's probability is how strongly its tokens (detection), or
its highlighted tokens (fuzzing), carry that weight. It measures how much of an AUROC token
identity alone explains, a control the paper lacks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from ..progress import JsonLinesLog
from .delphi_compat import import_delphi

import_delphi()
from delphi.scorers.classifier.detection import DetectionScorer  # noqa: E402
from delphi.scorers.classifier.fuzz import FuzzingScorer  # noqa: E402
from delphi.scorers.classifier.sample import L, R  # noqa: E402

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


def scorer_options(scorer: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What delphi's scorer takes from the settings: fuzzing marks tokens above a fraction of the
    example's top activation."""
    return {"threshold": settings["highlight_threshold"]} if scorer == "fuzz" else {}


def samples(record, scorer: str, settings: dict[str, Any]) -> list:
    """delphi's own samples for `scorer` ('fuzz' or 'detection') of one latent."""
    return SCORERS[scorer](client=None, **scorer_options(scorer, settings))._prepare(record)


def highlighted(text: str, str_tokens: list[str]) -> list[int] | None:
    """Indices of the tokens delphi marked <<like this>> in `text` (None if the text is not the
    tokens with marks)."""
    marked, position, inside = [], 0, False
    for index, token in enumerate(str_tokens):
        for mark, opens in ((L, True), (R, False)):
            if text.startswith(mark, position) and inside != opens:
                inside, position = opens, position + len(mark)
        if not text.startswith(token, position):
            return None
        if inside:
            marked.append(index)
        position += len(token)
    return marked


class NullExplainer:
    """Token identity as the explanation: weights per token string from the explanation examples."""

    def __init__(self, record, tokenizer):
        by_id = token_activation(record.train)
        self.weights: dict[str, float] = defaultdict(float)
        for token, value in by_id.items():
            self.weights[tokenizer.decode([token])] += value
        self.top = max(self.weights.values(), default=0.0)

    def explanation(self, n: int = 10) -> str:
        ranked = sorted(self.weights.items(), key=lambda item: -item[1])[:n]
        return "tokens: " + ", ".join(f"{token!r} {value / self.top:.2f}" for token, value in ranked)

    def weight(self, token: str) -> float:
        return self.weights.get(token, 0.0) / self.top if self.top else 0.0

    def probability(self, sample, scorer: str) -> float | None:
        tokens = sample.data.str_tokens
        if scorer == "detection":
            return max((self.weight(token) for token in tokens), default=0.0)
        marked = highlighted(sample.text, tokens)
        if marked is None:
            return None
        return float(np.mean([self.weight(tokens[i]) for i in marked])) if marked else 0.0


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


def score_with_null(record, tokenizer, settings: dict[str, Any]) -> dict[str, Any]:
    """One latent, explained and scored by the null explainer."""
    explainer = NullExplainer(record, tokenizer)
    rows = {
        scorer: [
            (sample.data.activating, explainer.probability(sample, scorer), sample.data.distance)
            for sample in samples(record, scorer, settings)
        ]
        for scorer in SCORERS
    }
    return latent_entry(record, explainer.explanation(), rows)
