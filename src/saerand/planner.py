"""Plan a study before anything runs: jobs per rule, GPU-hours per stage, disk high-water marks.

Jobs are Snakemake's own (a dry run of the workflow, saerand.dag), each costed by saerand.costs.

    python -m saerand.planner --configfile config/config.yaml [--benchmarks benchmarks] [--device-rates FILE]

GPU-hours come from the cost model in saerand.costs on a device's measured rates (bench/results,
saerand.device_rates), scaled per rule by what that rule's benchmark files (Snakemake `benchmark:`
TSVs of finished jobs) measured against the model where they exist.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from snakemake.io import glob_wildcards

from saerand.autointerp.explainers import SERVED
from saerand.config import SCHEMA, load_config
from saerand.costs import MODEL_BYTES, PYTHIA_VOCAB, ModelSize, StudyCosts
from saerand.dag import PlannedJob, study_jobs
from saerand.device_rates import DeviceRates
from saerand.fetch.artefacts import HubArtefact, hub_dataset, llm_artefact, study_artefacts
from saerand.rules import (
    BENCHMARKS,
    CPU_AUTOINTERP_GROUP,
    CPU_AUTOINTERP_GROUP_RULES,
    FINISH_GROUP,
    FINISH_GROUP_RULES,
    GPU_RULES,
    LLM_GROUP_RULES,
    LOCAL_RULES,
    SHARD_GROUP,
    SHARD_GROUP_RULES,
)
from saerand.study import SaeTarget, glove_paths
from saerand.toy.glove import GLOVE_ARCHIVE_FILES

REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


@dataclass
class RulePlan:
    jobs: int = 0
    seconds: float = 0.0  # the cost model's, on the device
    gpu: bool = False
    measured_scale: float = 1.0  # what finished jobs took over what the model said
    calibrated_from: int = 0  # benchmark files behind measured_scale
    counted_in: str | None = None  # a job whose GPU-hours another rule's count (the LLM server's)

    @property
    def gpu_hours(self) -> float | None:
        return self.seconds * self.measured_scale / 3600 if self.gpu else None


@dataclass
class Plan:
    rules: dict[str, RulePlan] = field(default_factory=dict)
    disk: dict[str, int] = field(default_factory=dict)  # stage -> high-water bytes
    largest_sae: SaeTarget | None = None
    layer_step_gpu_bytes: int = 0  # estimated peak GPU memory of the largest layer's training job
    cluster_jobs: int = 0  # Slurm jobs once the profile has grouped the rules' jobs
    # Training wall-clock, one GPU per (model, variant): unlimited, and under the scratch budget.
    chains: int = 0
    lanes: int | None = None
    training_hours: float = 0.0
    training_hours_in_budget: float = 0.0
    # What the prefetch rules fetch on the login node: artefact -> (bytes downloaded, bytes on disk).
    downloads: dict[str, tuple[float, float]] = field(default_factory=dict)
    download_mb_s: float = 100.0
    node_local_bytes: int | None = None  # a GPU job's node-local disk (cache.node_local_dir)
    # The LLM's GPU-hours with vLLM's prefix cache on, and off (autointerp.llm.prefix_caching).
    llm_gpu_hours: dict[str, float] = field(default_factory=dict)
    rates: DeviceRates | None = None  # the device the GPU rules' times are for

    @property
    def total_jobs(self) -> int:
        return sum(rule.jobs for rule in self.rules.values())

    @property
    def gpu_hours(self) -> float:
        return sum(rule.gpu_hours or 0.0 for rule in self.rules.values())


def measured_scale(costs: StudyCosts, benchmarks: Path) -> dict[str, tuple[float, int]]:
    """Per GPU rule, the seconds its benchmark files measured (jobs of models this config knows) over
    the seconds the cost model gives the same jobs, and how many files."""
    measured = {}
    for rule, pattern in BENCHMARKS.items():
        predicted = seconds = 0.0
        files = 0
        # The rule's own pattern, each wildcard one path component (an explainer one the rule runs).
        found = glob_wildcards(
            re.sub(
                r"\{(\w+)\}",
                lambda name: f"{{{name[1]},{'|'.join(SERVED) if name[1] == 'explainer' else '[^/]+'}}}",
                str(benchmarks / pattern.removeprefix("benchmarks/")),
            )
        )
        for values in sorted(zip(*found)):
            wildcards = dict(zip(found._fields, values))
            path = benchmarks / pattern.removeprefix("benchmarks/").format(**wildcards)
            known = (
                wildcards["toy_dataset"] in costs.study.toy_datasets
                if rule == "toy_sweep_gpu"
                else wildcards["model"] in costs.settings.models
            )
            if not known:
                continue
            with open(path) as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            if not rows:
                continue
            job_seconds = costs.job_seconds(rule, costs.job_cost(rule, wildcards))
            if job_seconds <= 0:
                continue
            predicted += job_seconds
            seconds += sum(float(row["s"]) for row in rows) / len(rows)
            files += 1
        if files and seconds > 0:
            measured[rule] = (seconds / predicted, files)
    return measured


def group_components(group: str, profile: Path = SLURM_PROFILE) -> int:
    """Jobs per cluster job of `group`: the Slurm profile's group-components (FINISH_GROUP: SAEs
    finished and evaluated)."""
    settings = yaml.safe_load(profile.read_text())
    return int(settings.get("group-components", {}).get(group, 1))


def cluster_jobs(jobs: list[PlannedJob], finish_batch: int) -> int:
    """Slurm jobs: one per shard group, one per batch of finished SAEs, one per LLM server (with its
    SAEs), one per batch of null-explainer jobs, one per ungrouped job; none for the local rules."""
    shard_groups = {SHARD_GROUP.format(**job.wildcards) for job in jobs if job.rule in SHARD_GROUP_RULES}
    saes_per_finish_group = Counter(FINISH_GROUP.format(**job.wildcards) for job in jobs if job.rule == "finalize_sae")
    finish_groups = sum(math.ceil(n / finish_batch) for n in saes_per_finish_group.values())
    llm_groups = sum(1 for job in jobs if job.rule == "llm_server")
    saes_per_tokens_group = Counter(
        CPU_AUTOINTERP_GROUP.format(**job.wildcards) for job in jobs if job.rule in CPU_AUTOINTERP_GROUP_RULES
    )
    cpu_autointerp_batch = group_components(CPU_AUTOINTERP_GROUP)
    tokens_groups = sum(math.ceil(n / cpu_autointerp_batch) for n in saes_per_tokens_group.values())
    grouped = SHARD_GROUP_RULES + FINISH_GROUP_RULES + LLM_GROUP_RULES + CPU_AUTOINTERP_GROUP_RULES + LOCAL_RULES
    ungrouped = sum(1 for job in jobs if job.rule not in grouped)
    return len(shard_groups) + finish_groups + llm_groups + tokens_groups + ungrouped


def job_seconds(costs: StudyCosts, job: PlannedJob) -> float:
    """Seconds of a job's own work (0 outside the cost model). An LLM job's cost is its server's work
    while the SAEs of that server share it; its own work is one SAE's."""
    cost = costs.autointerp_llm() if job.rule == "autointerp_llm" else costs.job_cost(job.rule, job.wildcards)
    return costs.job_seconds(job.rule, cost) if cost else 0.0


def disk_high_water(costs: StudyCosts, downloads: dict[str, tuple[float, float]]) -> dict[str, int]:
    """Bytes each stage holds on disk at its most: what the study's storage must have room for."""
    models = list(costs.settings.models)
    pairs = [(model, variant) for model in models for variant in costs.settings.variants]
    disk = {"tokens": sum(costs.token_store_bytes(model) for model in models)}
    if costs.settings.cache.node_local_dir is None:
        # At most two shards per (model, variant) at once (the lookahead); every (model, variant) at
        # once, or as many as the scratch budget lets train together (the largest ones).
        disk["training activations (temporary)"] = sum(
            sorted((costs.chain_scratch_bytes(model) for model, _ in costs.study.chains), reverse=True)[: costs.lanes]
        )
    disk |= {
        "held-out activations": sum(costs.cache_eval(model).disk_bytes for model, _ in pairs),
        # A shard's job reads one checkpoint and writes the next; older ones are deleted.
        "training checkpoints (temporary)": sum(
            2 * costs.train_layer_shard(model, layer, 0).disk_bytes for model, _, layer in costs.study.training_layers
        ),
        "SAEs": sum(costs.finalize_sae(t).disk_bytes for t in costs.study.targets),
    }
    disk["downloads (hf_home, GloVe)"] = sum(on_disk for _, on_disk in downloads.values())
    return disk


def node_local_bytes(costs: StudyCosts) -> int | None:
    """The node-local disk one GPU job needs with config `cache.node_local_dir`: its shard, the
    largest of the study (None: shards are on the shared filesystem)."""
    if costs.settings.cache.node_local_dir is None:
        return None
    shards = range(len(costs.study.shards))
    return max(
        (costs.cache_train_shard(model, s).disk_bytes for model, _ in costs.study.chains for s in shards), default=0
    )


def plan(
    config: dict[str, Any],
    benchmarks: Path | None = None,
    rates: DeviceRates | None = None,
    finish_batch: int | None = None,
    jobs: list[PlannedJob] | None = None,
) -> Plan:
    """The study's plan on the device of `rates` (default: the newest bench file's); `jobs` are
    Snakemake's own for `config` (a dry run, saerand.dag), by default planned here."""
    costs = StudyCosts(config, rates=rates)
    jobs = study_jobs(config) if jobs is None else jobs
    rules: dict[str, RulePlan] = defaultdict(RulePlan)
    for job in jobs:
        rules[job.rule].jobs += 1
        rules[job.rule].seconds += job_seconds(costs, job)
    if "llm_server" in rules:
        rules["llm_server"].counted_in = "autointerp_llm"
    measured = measured_scale(costs, benchmarks) if benchmarks and benchmarks.is_dir() else {}
    for rule in [rule for rule in GPU_RULES if rule in rules]:
        rules[rule].gpu = True
        rules[rule].measured_scale, rules[rule].calibrated_from = measured.get(rule, (1.0, 0))

    llm_gpu_hours = {}
    if "autointerp_llm" in rules:
        # The LLM's FLOPs are proportional to the tokens it computes per latent.
        per_latent = {cached: costs.llm_tokens_per_latent(cached) for cached in (True, False)}
        scale = rules["autointerp_llm"].gpu_hours / costs.llm_tokens_per_latent()
        llm_gpu_hours = {"prefix cache on": scale * per_latent[True], "prefix cache off": scale * per_latent[False]}
    downloads = downloads_of(config)
    disk = disk_high_water(costs, downloads)
    largest = max(costs.study.targets, key=lambda t: costs.size(t.model).d_model ** 2 * t.expansion_factor)
    step_gpu_bytes = max(costs.layer_step_gpu_bytes(model, layer) for model, _, layer in costs.study.training_layers)
    batch = group_components(FINISH_GROUP) if finish_batch is None else finish_batch
    hours = chain_hours(costs, rules)
    lanes = costs.lanes or len(costs.study.chains)
    # Chain i follows chain i - lanes (common.smk, chain_before_finished): lanes run side by side.
    in_budget = max((sum(list(hours.values())[lane::lanes]) for lane in range(lanes)), default=0.0)
    return Plan(
        rules=dict(rules),
        disk=disk,
        largest_sae=largest,
        layer_step_gpu_bytes=step_gpu_bytes,
        cluster_jobs=cluster_jobs(jobs, batch),
        chains=len(costs.study.chains),
        lanes=costs.lanes,
        training_hours=max(hours.values(), default=0.0),
        training_hours_in_budget=in_budget,
        downloads=downloads,
        download_mb_s=costs.settings.prefetch.bandwidth_mb_s,
        node_local_bytes=node_local_bytes(costs),
        llm_gpu_hours=llm_gpu_hours,
        rates=costs.rates,
    )


def download_estimate(config: dict[str, Any], artefact: HubArtefact) -> float:
    """Bytes of a hub artefact: a dataset's and the LLM's as configured (download_bytes, weights_bytes;
    0 where a dataset gives none), a subject model's from its shapes, stored as Pythia's in float16."""
    if artefact.repo_type == "dataset":
        specs = [spec for spec in config["datasets"].values() if isinstance(spec, dict)]
        return max((spec.get("download_bytes") or 0.0 for spec in specs if hub_dataset(spec) == artefact), default=0.0)
    if artefact == llm_artefact(config):
        return config["autointerp"]["llm"]["weights_bytes"]
    model = next(model for model in config["models"].values() if model.get("hub_id") == artefact.repo_id)
    checkpoint = ModelSize(model["n_layers"], model["d_model"], PYTHIA_VOCAB, "float16")
    return MODEL_BYTES[checkpoint.dtype] * checkpoint.params()


def downloads_of(config: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Everything a fresh study fetches (workflow/rules/prefetch.smk): hub artefacts by record name,
    and glove.6B.zip, with the bytes of its configured files once unzipped (the zip is removed)."""
    downloads = {name: (download_estimate(config, artefact),) * 2 for name, artefact in study_artefacts(config).items()}
    glove = {Path(path).name for path in glove_paths(config)}
    if glove & set(GLOVE_ARCHIVE_FILES):
        downloads["glove.6B.zip"] = (
            config["prefetch"]["glove"]["bytes"],
            sum(GLOVE_ARCHIVE_FILES[name] for name in glove & set(GLOVE_ARCHIVE_FILES)),
        )
    return downloads


def chain_hours(costs: StudyCosts, rules: dict[str, RulePlan]) -> dict[tuple[str, str], float]:
    """GPU-hours of caching and training one (model, variant), its shards one after the other."""
    hours = {}
    for model, variant in costs.study.chains:
        layers = [layer for m, v, layer in costs.study.training_layers if (m, v) == (model, variant)]
        seconds = {"cache_train_shard": 0.0, "train_layer_shard": 0.0}
        for shard in range(len(costs.study.shards)):
            seconds["cache_train_shard"] += costs.job_seconds(
                "cache_train_shard", costs.cache_train_shard(model, shard)
            )
            seconds["train_layer_shard"] += sum(
                costs.job_seconds("train_layer_shard", costs.train_layer_shard(model, layer, shard)) for layer in layers
            )
        hours[model, variant] = sum(s * rules[rule].measured_scale / 3600 for rule, s in seconds.items())
    return hours


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    raise AssertionError


def format_plan(plan: Plan) -> str:
    lines = [f"{'rule':<28}{'jobs':>8}{'GPU-hours':>12}  from"]
    for name, rule in plan.rules.items():
        if rule.counted_in:
            lines.append(f"{name:<28}{rule.jobs:>8}{'GPU':>12}  counted in {rule.counted_in}")
        elif rule.gpu_hours is None:
            lines.append(f"{name:<28}{rule.jobs:>8}{'local' if name in LOCAL_RULES else 'CPU':>12}")
        else:
            if name == "autointerp_llm":
                source = "the served LLM's FLOPs at 200 TFLOP/s per GPU (assumed)"
            else:
                source = "the device model"
            if rule.calibrated_from:
                source += f" x {rule.measured_scale:.3g} (measured, {rule.calibrated_from} benchmark files)"
            lines.append(f"{name:<28}{rule.jobs:>8}{rule.gpu_hours:>12,.2f}  {source}")
    lines.append(f"{'total':<28}{plan.total_jobs:>8}{plan.gpu_hours:>12,.2f}")
    lines.append(f"{'cluster jobs (Slurm groups)':<28}{plan.cluster_jobs:>8}")
    if plan.rates:
        lines.append(f"device model: {plan.rates.device}, rates from {plan.rates.source} (--device-rates)")
    if plan.llm_gpu_hours:
        hours = ", ".join(f"{hours:,.2f} with the {name}" for name, hours in plan.llm_gpu_hours.items())
        lines.append(f"LLM GPU-hours: {hours} (autointerp.llm.prefix_caching)")
    lines.append("")
    lines.append(f"{'disk high-water mark':<36}{'bytes':>12}")
    for stage, size in plan.disk.items():
        lines.append(f"{stage:<36}{_bytes(size):>12}")
    lines.append(f"{'all stages at once':<36}{_bytes(sum(plan.disk.values())):>12}")
    if plan.node_local_bytes is not None:
        lines.append(f"{'node-local, each GPU job (its shard)':<36}{_bytes(plan.node_local_bytes):>12}")
    if plan.lanes is None:
        lines.append(
            "(temporary stages: every (model, variant) and SAE in training at once; fewer concurrent jobs need less)"
        )
    else:
        lines.append(f"(scratch_budget: {plan.lanes} of {plan.chains} (model, variant) chains train at once)")
    if plan.lanes is None:
        lines.append(
            f"training wall-clock, one GPU per (model, variant), every chain at once: {plan.training_hours:,.1f} h"
        )
    else:
        lines.append(
            f"training wall-clock, one GPU per (model, variant): {plan.training_hours:,.1f} h with every "
            f"chain at once, {plan.training_hours_in_budget:,.1f} h under the scratch budget"
        )
    if plan.downloads:
        fetched = sum(download for download, _ in plan.downloads.values())
        lines.append(f"\n{'fetched on the login node (snakemake prefetch)':<60}{'bytes':>12}")
        for name, (download, _) in plan.downloads.items():
            lines.append(f"{name:<60}{_bytes(download) if download else 'unknown':>12}")
        lines.append(
            f"{'all':<60}{_bytes(fetched):>12}  (about {fetched / plan.download_mb_s / 1e6 / 3600:.1f} h "
            f"at {plan.download_mb_s:g} MB/s, prefetch.bandwidth_mb_s)"
        )
    if plan.largest_sae:
        sae = plan.largest_sae
        lines.append(
            f"\nlargest SAE ({sae.model}, expansion {sae.expansion_factor}, k {sae.k}); the largest layer job "
            f"(every SAE of a layer resident, one step at a time) takes about "
            f"{_bytes(plan.layer_step_gpu_bytes)} of GPU memory (estimate)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    parser.add_argument(
        "--benchmarks",
        type=Path,
        default=Path("benchmarks"),
        help="Snakemake benchmark files of earlier runs of this study, to calibrate throughput",
    )
    parser.add_argument(
        "--device-rates",
        type=Path,
        default=None,
        help="a GPU's rates.json from bench/device_rates.py (default: the newest under bench/results, "
        "else assumed H100 figures)",
    )
    args = parser.parse_args(argv)
    config = load_config(args.configfile, SCHEMA)
    rates = None if args.device_rates is None else DeviceRates.load(args.device_rates)
    print(format_plan(plan(config, args.benchmarks, rates)))


if __name__ == "__main__":
    main()
