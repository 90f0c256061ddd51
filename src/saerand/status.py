"""Where a study stands: per stage, how many SAEs are done, running and waiting, and the time left.

    python -m saerand.status --configfile config/config.yaml [--directory .] [--gpus N]

Read from the working directory: a stage is done for an SAE when its output exists, running when
Snakemake has marked that output incomplete (a job started or submitted and not yet finished; a
killed run's marks stay until Snakemake runs again) and waiting otherwise. Where Slurm's `squeue` is
on PATH, this user's queued and running jobs per rule. The GPU time left is the planner's cost model
over the GPU jobs Snakemake itself would still run (a dry run in the directory, running jobs
counted whole), scaled per rule by what the finished jobs' benchmark files measured against the
model (unscaled for a rule with none).
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saerand.config import SCHEMA, load_config
from saerand.costs import StudyCosts
from saerand.dag import PlannedJob, study_jobs
from saerand.paths import layer_checkpoint_directory
from saerand.planner import job_seconds, measured_scale
from saerand.rules import GPU_RULES
from saerand.study import SaeTarget

STATES = ("done", "running", "waiting")


@dataclass
class Status:
    saes: int
    stages: dict[str, Counter] = field(default_factory=dict)  # stage -> state -> SAEs
    gpu_hours_left: float = 0.0
    calibrated_rules: dict[str, int] = field(default_factory=dict)  # rule -> finished jobs measured
    queue: Counter = field(default_factory=Counter)  # (rule, Slurm state) -> jobs


def incomplete_outputs(directory: Path) -> set[str]:
    """Outputs Snakemake has marked incomplete (.snakemake/incomplete: one file per output, its path
    urlsafe-base64 encoded, split into '@'-prefixed folders where longer than a file name)."""
    root = directory / ".snakemake" / "incomplete"
    paths = set()
    for marker in root.rglob("*") if root.is_dir() else []:
        if not marker.is_file() or marker.name == "migration_underway":
            continue
        encoded = "".join(part.removeprefix("@") for part in marker.relative_to(root).parts)
        try:
            paths.add(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return paths


def _running(path: str, incomplete: set[str]) -> bool:
    return any(marked == path or marked.startswith(path.rstrip("/") + "/") for marked in incomplete)


def slurm_queue() -> Counter:
    """This user's Slurm jobs per (rule, state), from the comment the Snakemake Slurm executor gives
    each job ('rule_<name>_wildcards_...'); empty where there is no squeue."""
    if shutil.which("squeue") is None:
        return Counter()
    result = subprocess.run(["squeue", "--me", "-h", "-o", "%T|%k"], capture_output=True, text=True, timeout=60)
    queue: Counter = Counter()
    for line in result.stdout.splitlines():
        state, _, comment = line.partition("|")
        match = re.match(r"rule_(.+?)(?:_wildcards_|$)", comment.strip())
        if match:
            queue[(match[1], state.strip().lower())] += 1
    return queue


def study_status(
    config: dict[str, Any], directory: Path, queue: Counter | None = None, jobs: list[PlannedJob] | None = None
) -> Status:
    """The study in `directory`; `jobs` are those Snakemake would still run there (by default a
    dry run in it, saerand.dag)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no study there (--directory: where Snakemake runs the study)")
    costs = StudyCosts(config)
    incomplete = incomplete_outputs(directory)
    explainers = costs.settings.autointerp.explainers if costs.settings.autointerp else []
    interpreted = set(costs.study.autointerp_targets)
    status = Status(saes=len(costs.study.targets), queue=slurm_queue() if queue is None else queue)

    def exists(path: str) -> bool:
        return (directory / path).exists()

    def count(stage: str, targets: list[SaeTarget], output, working=lambda target: False) -> None:
        """Tally `stage` over `targets` (running: its output, or what `working` names, marked
        incomplete)."""
        states = Counter({state: 0 for state in STATES})
        for target in targets:
            path = output(target)
            running = _running(path, incomplete) or working(target)
            states["running" if running else ("done" if exists(path) else "waiting")] += 1
        status.stages[stage] = states

    # An SAE trains in its layer's shard jobs: a layer checkpoint being written counts as training.
    count(
        "training",
        costs.study.targets,
        lambda t: f"{t.directory}/sae",
        lambda t: any(
            _running(layer_checkpoint_directory(t.model, t.variant, t.layer, shard), incomplete)
            for shard in range(len(costs.study.shards))
        ),
    )
    count("evaluation", costs.study.targets, lambda t: f"{t.directory}/metrics.json")
    for explainer in explainers:
        count(
            f"autointerp ({explainer})",
            [t for t in costs.study.targets if t in interpreted],
            lambda t, e=explainer: f"{t.directory}/autointerp/{e}",
        )
    # The jobs the next run would do (a dry run here), with the planner's FLOPs.
    benchmarks = directory / "benchmarks"
    measured = measured_scale(costs, benchmarks) if benchmarks.is_dir() else {}
    status.calibrated_rules = {rule: files for rule, (_, files) in measured.items()}
    for job in study_jobs(config, directory) if jobs is None else jobs:
        if job.rule in GPU_RULES:
            scale = measured[job.rule][0] if job.rule in measured else 1.0
            status.gpu_hours_left += job_seconds(costs, job) * scale / 3600
    return status


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def format_status(status: Status, gpus: int) -> str:
    width = max(len(stage) for stage in status.stages)
    lines = [f"{status.saes} SAEs", f"{'stage':<{width}}  " + "  ".join(f"{s:>8}" for s in STATES)]
    for stage, states in status.stages.items():
        lines.append(f"{stage:<{width}}  " + "  ".join(f"{states[s]:>8}" for s in STATES))
    calibrated = ", ".join(f"{rule} ({n})" for rule, n in sorted(status.calibrated_rules.items())) or "none yet"
    lines.append(
        f"GPU time left: {_duration(status.gpu_hours_left)}, about {_duration(status.gpu_hours_left / gpus)} "
        f"on {gpus} GPU{'s' if gpus > 1 else ''} (the model scaled by finished jobs of: {calibrated})"
    )
    if status.queue:
        by_state = Counter()
        for (_, state), jobs in status.queue.items():
            by_state[state] += jobs
        per_rule = ", ".join(f"{rule} {state} {jobs}" for (rule, state), jobs in sorted(status.queue.items()))
        lines.append(
            "Slurm: " + ", ".join(f"{jobs} {state}" for state, jobs in sorted(by_state.items())) + f" ({per_rule})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Status:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--directory", default=".", help="the study's working directory (where Snakemake runs)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs working at once, for the wall-clock estimate")
    args = parser.parse_args(argv)
    status = study_status(load_config(args.configfile, SCHEMA), Path(args.directory))
    print(format_status(status, max(1, args.gpus)))
    return status


if __name__ == "__main__":
    main()
