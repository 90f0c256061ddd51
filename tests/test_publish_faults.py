"""Every rule publishes its outputs by rename, so a job failing at that moment leaves none of them,
even under --keep-incomplete (profiles/slurm), where Snakemake keeps whatever a failed job wrote.

On a copy of the finished mini study, chosen jobs' outputs are deleted and publishing into them is
refused (tests/publish_faults/sitecustomize.py). A job that writes an output without a rename is
not refused: it succeeds, and the test names its rule. Snakemake starts a job only after the jobs
it depends on, so a failed job blocks its descendants: the jobs go in rounds, one snakemake run
each, in which no job depends on another; from the leaves up, so that no round needs an output an
earlier one left missing. The corpus, the tokenizer, the model and the token stores each feed the
next and every later stage, hence a round each.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from saerand.dag import TARGET_RULES
from saerand.paths import layer_checkpoint_directory, sae_directory

from .workflow_runs import MINI, REPO, SNAKEMAKE

PUBLISH_FAULTS = REPO / "tests" / "publish_faults"
MODEL = "results/mini-neox"

# One output of one job of each rule of tests/configs/mini.yaml.
ROUNDS = [
    # Leaves: nothing reads them.
    [
        "results/figures/hyperparameter_sweep.png",
        "results/figures/training_curves_mini-neox.png",
        "results/claims.csv",
        "results/figures/roc_mini-neox_tokens.png",
        "results/browser/mini-neox_tokens",
        "results/toy/figures/figure4_lomax.png",
    ],
    # What the leaves read (the claims read the superposition sweep's table).
    ["results/metrics.csv", "results/toy/superposition/metrics.csv"],
    # What those read (the toy sweeps on the CPU and on the GPU).
    ["results/toy/superposition/seed-0.csv", "results/toy/embeddings-mini-neox/seed-0.csv"],
    # Each stage of a (model, variant) in another (variant, layer). A training shard and a layer
    # checkpoint are temporary, gone in a finished study: asked for again, their jobs run again;
    # finishing an SAE reruns its layer's chain (its training shards and checkpoints) first.
    [
        f"{MODEL}/trained/cache/eval.zarr",
        f"{MODEL}/trained/cache/train/shard-0.zarr",
        layer_checkpoint_directory("mini-neox", "control", 0, 0),
        f"{sae_directory('mini-neox', 'rerandomized_excl_emb', 0, 4, 4)}/sae",
        f"{sae_directory('mini-neox', 'control', 1, 4, 4)}/metrics.json",
        f"{MODEL}/step0/autointerp/latents",
        f"{sae_directory('mini-neox', 'rerandomized_incl_emb', 0, 4, 4)}/autointerp/tokens",
    ],
    [f"{MODEL}/tokens/autointerp.zarr"],
    ["resources/models/mini-neox"],
    ["resources/tokenizers/mini-neox"],
    ["resources/corpus/train.txt"],
]


def _snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(MINI), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)


def _jobs(workdir: Path, targets: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Each output of the study's jobs and of the jobs making `targets`: its job's rule and outputs
    (Snakemake's --summary; a job's outputs share its log)."""
    result = _snakemake(workdir, "--summary", "--nolock", "all", *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    header = result.stdout.index("output_file\t")
    rows = list(csv.DictReader(result.stdout[header:].splitlines(), delimiter="\t"))
    outputs = defaultdict(list)
    for row in rows:
        outputs[row["rule"], row["log-file(s)"]].append(row["output_file"])
    return {row["output_file"]: (row["rule"], outputs[row["rule"], row["log-file(s)"]]) for row in rows}


def _left_behind(workdir: Path, output: str) -> list[Path]:
    """The output itself and any staging of it."""
    path = workdir / output
    return [p for p in [path, *path.parent.glob(f".{path.name}.partial-*")] if p.exists() or p.is_symlink()]


def _run_refusing(workdir: Path, targets: list[str], outputs: list[str], refusals: Path) -> str:
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PUBLISH_FAULTS), os.environ.get("PYTHONPATH")])),
        "SAERAND_REFUSE_PUBLISHING": os.pathsep.join(str(workdir / output) for output in outputs),
        "SAERAND_REFUSALS": str(refusals),
    }
    # As profiles/slurm runs: failed jobs keep what they wrote, the others go on.
    result = _snakemake(workdir, "--cores", "2", "--keep-going", "--keep-incomplete", *targets, env=env)
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_job_failing_as_it_publishes_leaves_none_of_its_outputs(mini_snapshot, tmp_path):
    workdir = tmp_path / "study"
    shutil.copytree(mini_snapshot, workdir, symlinks=True)  # copy2 keeps every mtime
    workdir = workdir.resolve()  # as jobs see it from their working directory
    jobs = _jobs(workdir, [target for targets in ROUNDS for target in targets])
    rules = {rule for rule, _ in jobs.values()} - set(TARGET_RULES)
    assert sorted(jobs[target][0] for targets in ROUNDS for target in targets) == sorted(rules)  # one job each
    refusals = tmp_path / "refusals.txt"
    refusals.touch()
    for targets in ROUNDS:
        outputs = [output for target in targets for output in jobs[target][1]]
        for output in outputs:
            path = workdir / output
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        log = _run_refusing(workdir, targets, outputs, refusals)
        refused = {Path(line).relative_to(workdir).as_posix() for line in refusals.read_text().split()}
        for target in targets:
            rule, its_outputs = jobs[target]
            published = refused & set(its_outputs)
            assert published, f"{rule} did not publish each of {its_outputs} by one rename of it:\n{log[-3000:]}"
            left = [p for output in its_outputs for p in _left_behind(workdir, output)]
            assert not left, f"{rule} failed as it published, and left {left}:\n{log[-3000:]}"
