"""Running the real workflow from tests: the snakemake command, its planned jobs, the mini study."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# As users run it: the local profile (its rerun triggers matter, see profiles/local/config.yaml).
SNAKEMAKE = [
    sys.executable,
    "-m",
    "snakemake",
    "--snakefile",
    str(REPO / "Snakefile"),
    "--profile",
    str(REPO / "profiles" / "local"),
]
MINI = REPO / "tests" / "configs" / "mini.yaml"


def snakemake(*args, cwd=REPO, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def run_watching_shards(workdir: Path, *args, configfile: Path = MINI) -> tuple[int, int]:
    """Run snakemake to the end, polling the training shards on disk; returns the most that one
    (model, variant) had at once, and the most on disk at once in all."""
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(configfile), "--cores", "2", *args]
    log = workdir / "snakemake-run.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        most, most_in_all = 0, 0
        while process.poll() is None:
            per_variant = Counter(p.parent for p in workdir.glob("results/*/*/cache/train/shard-*.zarr"))
            most = max([most, *per_variant.values()])
            most_in_all = max(most_in_all, sum(per_variant.values()))
            time.sleep(0.05)
    assert process.returncode == 0, log.read_text()[-3000:]
    return most, most_in_all


def start_from_built_model(source: Path, workdir: Path) -> None:
    """Give `workdir` the embedded model and token stores of a finished run of tests/configs/mini.yaml
    (and Snakemake's records of them), for a study that differs from it only downstream of them."""
    for part in ("resources", "results/mini-neox/tokens", ".snakemake/metadata"):
        shutil.copytree(source / part, workdir / part, symlinks=True)  # copy2 keeps every mtime
