"""The jobs Snakemake itself plans for a study: what the planner and the status command count, so no
count of the study's jobs is written outside the rules."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
# Rules that only name targets: no work, no job on any machine.
TARGET_RULES = ("all", "prefetch")


class PlannedJob(NamedTuple):
    rule: str
    wildcards: dict[str, str]


def planned_jobs(output: str) -> list[PlannedJob]:
    """Every job of a dry run's output, in its order (a group's jobs are printed indented under
    "group job ...")."""
    jobs = []
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", output):
        header = re.match(r"\s*(?:local)?rule (\w+):", block)
        if header:
            found = re.search(r"wildcards: (.*)", block)
            wildcards = dict(pair.split("=", 1) for pair in found.group(1).split(", ")) if found else {}
            jobs.append(PlannedJob(header.group(1), wildcards))
    return jobs


def study_jobs(config: dict[str, Any], directory: Path | None = None) -> list[PlannedJob]:
    """The jobs of a dry run of the workflow with `config`, in `directory` (by default an empty one:
    the whole study from scratch), target rules left out; by rule name (a dry run's order varies).
    In a study's directory: what the next run would do, the jobs running now included (their
    outputs are marked incomplete); the dry run takes no lock, so a run may be going on."""
    with tempfile.TemporaryDirectory(prefix="saerand-dag-") as scratch:
        configfile = Path(scratch) / "config.yaml"
        configfile.write_text(yaml.safe_dump(config, sort_keys=False))
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--dry-run"]
        command += ["--directory", str(directory or scratch), "--configfile", str(configfile), "--rerun-incomplete"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake --dry-run of the study failed:\n{(result.stdout + result.stderr)[-4000:]}")
    jobs = [job for job in planned_jobs(result.stdout + result.stderr) if job.rule not in TARGET_RULES]
    return sorted(jobs, key=lambda job: job.rule)
