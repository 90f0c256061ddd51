"""One SAE's auto-interpretability run: its sampled latents loaded by delphi, explained and scored
one by one (resumable), then its outputs published at once: per-latent results, every scored
sample (for ROC curves) and a summary with bootstrap intervals over latents."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_directory, write_json
from ..intervals import bootstrap_mean, resample_counts, with_intervals
from ..models import load_tokenizer
from ..progress import resume_progress
from ..provenance import provenance, without_secrets
from ..reruns import result_defining
from ..settings import AutointerpSettings
from ..study import revision_for
from .delphi_compat import DelphiTokenizer, import_delphi
from .explainers import registered_explainer
from .scoring import SCORERS, LatentLog, pooled_auroc

import_delphi()
from delphi.config import ConstructorConfig, SamplerConfig  # noqa: E402
from delphi.latents import LatentDataset, LatentRecord  # noqa: E402
from delphi.latents.constructors import constructor  # noqa: E402
from delphi.latents.samplers import sampler  # noqa: E402


class CappedLatentDataset(LatentDataset):
    """delphi's LatentDataset with the authors' `max_examples`: each latent's activating windows, which
    delphi's constructor sorts by their top activation, are cut to the first `max_examples` before
    the explanation examples and the test quantiles are drawn from them (delphi 0.1.3 has no cap; the
    authors' pipeline kept 10,000). Non-activating windows are still those where the latent never
    fires. Latent neighbours (a non-activating source this workflow does not use) are not loaded."""

    def __init__(self, *args: Any, max_examples: int | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_examples = max_examples

    def _process_latent(self, latent_data) -> LatentRecord | None:
        record = LatentRecord(latent_data.latent)
        record.per_token_frequency = len(latent_data.activation_data.activations) / self.tokens.numel()
        record = constructor(
            record=record,
            activation_data=latent_data.activation_data,
            constructor_cfg=self.constructor_cfg,
            tokens=self.tokens,
            tokenizer=self.tokenizer,
            all_data=self.all_data[latent_data.module],
        )
        if record is None:
            return None
        record.examples = record.examples[: self.max_examples]
        return sampler(record, self.sampler_cfg, self.tokenizer)


def latent_dataset(
    raw_dir: str | Path, module: str, tokenizer, settings: AutointerpSettings
) -> tuple[LatentDataset, dict]:
    selection = json.loads((Path(raw_dir) / module / "selection.json").read_text())
    dataset = CappedLatentDataset(
        raw_dir,
        SamplerConfig(
            n_examples_train=settings.explanation_examples,
            n_examples_test=settings.test_examples,
            n_quantiles=settings.quantiles,
            train_type=settings.explanation_sampling,
        ),
        ConstructorConfig(
            example_ctx_len=settings.example_context,
            min_examples=settings.min_examples,
            n_non_activating=settings.non_activating,
        ),
        tokenizer=tokenizer,
        modules=[module],
        latents={module: torch.tensor(selection["selected"], dtype=torch.long)},
        max_examples=settings.max_examples,
    )
    return dataset, selection


def score_sae(
    raw_dir: str | Path,
    module: str,
    model: dict[str, Any],
    settings: AutointerpSettings,
    output: str | Path,
    explainer: str,
    server_file: str | Path | None = None,
) -> dict[str, Any]:
    """Explain and score one SAE's sampled latents with `explainer` (saerand.autointerp.explainers; a
    served one talks to the LLM server that `server_file` names) and publish its outputs at once."""
    explain_and_score = registered_explainer(explainer).explain_and_score()
    tokenizer = DelphiTokenizer(load_tokenizer(model["location"], revision_for(model, "trained")))
    dataset, selection = latent_dataset(raw_dir, module, tokenizer, settings)
    output = Path(output)
    # Progress lives beside the output, which Snakemake would delete with a failed job.
    progress = output.with_name(f".{output.name}.progress")
    # Made under other result-defining settings, by another explainer or for other latents: not
    # resumed. Operational settings (timeouts, concurrency) may change between attempts.
    recorded = asdict(settings)
    fingerprint = json.dumps(
        {"settings": result_defining("autointerp", recorded), "explainer": explainer, "selection": selection},
        sort_keys=True,
    )
    resume_progress(progress, fingerprint)
    log = LatentLog(progress / "latents.jsonl")
    asyncio.run(explain_and_score(list(dataset), log, tokenizer, settings, server_file))
    entries = [log.done[latent] for latent in selection["selected"] if latent in log.done]
    samples = [{"latent": entry["latent"], **sample} for entry in entries for sample in entry.get("samples", ())]
    summary = summarise(entries, samples, selection, settings, explainer=explainer, module=module)
    with atomic_directory(output) as staging:
        with open(staging / "latents.jsonl", "w") as handle:
            for entry in entries:
                handle.write(json.dumps({k: v for k, v in entry.items() if k != "samples"}) + "\n")
        pd.DataFrame(samples).to_csv(staging / "samples.csv", index=False)
        write_json(staging / "summary.json", provenance(**summary, autointerp=without_secrets(recorded)))
    shutil.rmtree(progress)
    return summary


def summarise(
    entries: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    selection: dict[str, Any],
    settings: AutointerpSettings,
    **identity: str,
) -> dict[str, Any]:
    """An SAE's auto-interp summary: what became of its selected latents, and the mean AUROC and
    token entropy over the scored ones (pooled AUROCs too) with bootstrap intervals over latents."""
    scored = [entry for entry in entries if "failed" not in entry]
    summary: dict[str, Any] = {
        **identity,
        "selected": len(selection["selected"]),
        "drawn": selection["drawn"],
        "dead": selection["dead"],
        "too_rare": selection["too_rare"],
        "scored": len(scored),
        "failed": len(entries) - len(scored),
        "not_constructed": len(selection["selected"]) - len(entries),
        "explanations_unparsed": sum(entry.get("explanation_parsed") is False for entry in scored),
        **{f"{scorer}_unparsed": sum(entry[f"{scorer}_unparsed"] for entry in scored) for scorer in SCORERS},
    }
    columns = [f"{scorer}_auroc" for scorer in SCORERS] + ["entropy_nats", "entropy_normalised"]
    replicates = {}
    for offset, column in enumerate(columns):
        values = np.array([entry[column] for entry in scored], dtype=float)
        summary[column], replicates[column] = bootstrap_mean(
            values, settings.bootstrap_resamples, settings.seed + offset
        )
    if scored:
        latents = [entry["latent"] for entry in scored]
        counts = resample_counts(len(latents), settings.bootstrap_resamples, settings.seed)
        for scorer in SCORERS:
            summary[f"{scorer}_auroc_pooled"], replicates[f"{scorer}_auroc_pooled"] = pooled_auroc(
                samples, scorer, latents, counts
            )
    summary = with_intervals(summary, replicates)
    summary["bootstrap"] = {
        "unit": "sampled latent",
        "resamples": settings.bootstrap_resamples,
        "replicates": {name: [round(v, 7) for v in values.tolist()] for name, values in replicates.items()},
    }
    return summary
