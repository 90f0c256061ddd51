"""One SAE's auto-interpretability run: its sampled latents loaded by delphi, explained and scored
one by one (resumable), then its outputs published at once: per-latent results, every scored
sample (for ROC curves) and a summary with bootstrap intervals over latents."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_directory, write_json
from ..config import revision_for
from ..intervals import bootstrap_mean, resample_counts, with_intervals
from ..models import load_tokenizer
from ..progress import resume_progress
from ..provenance import provenance, without_secrets
from ..reruns import result_defining
from .delphi_compat import DelphiTokenizer, import_delphi
from .llm import NoAnswer, Server, ServerWatch, score_with_llm
from .scoring import SCORERS, LatentLog, pooled_auroc, score_with_null

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


def latent_dataset(raw_dir: str | Path, module: str, tokenizer, settings: dict[str, Any]) -> tuple[LatentDataset, dict]:
    selection = json.loads((Path(raw_dir) / module / "selection.json").read_text())
    dataset = CappedLatentDataset(
        raw_dir,
        SamplerConfig(
            n_examples_train=settings["explanation_examples"],
            n_examples_test=settings["test_examples"],
            n_quantiles=settings["quantiles"],
            train_type=settings["explanation_sampling"],
        ),
        ConstructorConfig(
            example_ctx_len=settings["example_context"],
            min_examples=settings["min_examples"],
            n_non_activating=settings["non_activating"],
        ),
        tokenizer=tokenizer,
        modules=[module],
        latents={module: torch.tensor(selection["selected"], dtype=torch.long)},
        max_examples=settings["max_examples"],
    )
    return dataset, selection


async def score_latents(records: list, score, log: LatentLog, concurrency: int, check=lambda: None) -> None:
    """Score the records not yet in `log`, `concurrency` at a time, each logged as it finishes. A
    latent that fails is logged as failed; `check` may stop the job (a server gone), before the
    latent it interrupted is logged, so a rerun scores that latent again."""
    semaphore = asyncio.Semaphore(concurrency)
    progress = tqdm(total=len(records), initial=sum(r.latent.latent_index in log.done for r in records))

    async def one(record):
        async with semaphore:
            try:
                entry = await score(record)
            except Exception as error:  # one bad latent is recorded, not fatal
                entry = {"latent": record.latent.latent_index, "failed": f"{type(error).__name__}: {error}"}
                if isinstance(error, NoAnswer):
                    entry["retry"] = True
            check()
            log.add(entry)
            progress.update()

    await asyncio.gather(*(one(record) for record in records if record.latent.latent_index not in log.done))
    progress.close()


async def score_with(
    explainer: str, records: list, log: LatentLog, tokenizer, settings: dict[str, Any], server_file: str | Path | None
) -> None:
    if explainer == "tokens":

        async def null(record):
            return score_with_null(record, tokenizer, settings)

        await score_latents(records, null, log, concurrency=1)
        return
    llm = settings["llm"]
    server = Server.from_file(server_file)
    waited = server.wait_until_ready(llm["start_timeout"])
    print(f"{server.describe()} ready after {waited:.0f} s")
    watch = ServerWatch(server, llm["stuck_after"])
    transport = httpx.AsyncHTTPTransport(uds=server.socket)
    async with httpx.AsyncClient(transport=transport, base_url="http://llm", timeout=llm["request_timeout"]) as http:
        await score_latents(
            records,
            lambda record: score_with_llm(record, http, watch, settings),
            log,
            concurrency=llm["concurrency"],
            check=watch.raise_if_unavailable,
        )


def score_sae(
    raw_dir: str | Path,
    module: str,
    model: dict[str, Any],
    settings: dict[str, Any],
    output: str | Path,
    explainer: str,
    server_file: str | Path | None = None,
) -> dict[str, Any]:
    """Explain and score one SAE's sampled latents with `explainer` ('tokens': the null explainer;
    'llm': the served LLM named by `server_file`) and publish its outputs at once."""
    tokenizer = DelphiTokenizer(load_tokenizer(model["location"], revision_for(model, "trained")))
    dataset, selection = latent_dataset(raw_dir, module, tokenizer, settings)
    output = Path(output)
    # Progress lives beside the output, which Snakemake would delete with a failed job.
    progress = output.with_name(f".{output.name}.progress")
    # Made under other result-defining settings, by another explainer or for other latents: not
    # resumed. Operational settings (timeouts, concurrency) may change between attempts.
    fingerprint = json.dumps(
        {"settings": result_defining("autointerp", settings), "explainer": explainer, "selection": selection},
        sort_keys=True,
    )
    resume_progress(progress, fingerprint)
    log = LatentLog(progress / "latents.jsonl")
    asyncio.run(score_with(explainer, list(dataset), log, tokenizer, settings, server_file))
    entries = [log.done[latent] for latent in selection["selected"] if latent in log.done]
    scored = [entry for entry in entries if "failed" not in entry]
    summary: dict[str, Any] = {
        "explainer": explainer,
        "module": module,
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
            values, settings["bootstrap_resamples"], settings["seed"] + offset
        )
    samples = [{"latent": entry["latent"], **sample} for entry in scored for sample in entry["samples"]]
    if scored:
        latents = [entry["latent"] for entry in scored]
        counts = resample_counts(len(latents), settings["bootstrap_resamples"], settings["seed"])
        for scorer in SCORERS:
            summary[f"{scorer}_auroc_pooled"], replicates[f"{scorer}_auroc_pooled"] = pooled_auroc(
                samples, scorer, latents, counts
            )
    summary = with_intervals(summary, replicates)
    summary["bootstrap"] = {
        "unit": "sampled latent",
        "resamples": settings["bootstrap_resamples"],
        "replicates": {name: [round(v, 7) for v in values.tolist()] for name, values in replicates.items()},
    }
    with atomic_directory(output) as staging:
        with open(staging / "latents.jsonl", "w") as handle:
            for entry in entries:
                handle.write(json.dumps({k: v for k, v in entry.items() if k != "samples"}) + "\n")
        pd.DataFrame(samples).to_csv(staging / "samples.csv", index=False)
        write_json(staging / "summary.json", provenance(**summary, autointerp=without_secrets(settings)))
    shutil.rmtree(progress)
    return summary
