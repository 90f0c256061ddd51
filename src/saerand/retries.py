"""Cluster limits for retried jobs: more time only after a time-out, more memory only after an
out-of-memory kill, and never past what the partition and its nodes allow.

A job's earlier attempts are read from the logs the Slurm executor keeps per job
(`<slurm logdir>/rule_<rule>/<wildcards>/<jobid>.log`, or `group_<group>/...` for a job that ran in
a group, found by the job's own `wildcards:` line there). Slurm writes why it killed a job into that
log ("CANCELLED ... DUE TO TIME LIMIT", "Exceeded job memory limit", "oom-kill"). An attempt whose
log is missing (another executor, logs deleted) counts as both, as a plain attempt-scaled retry
would; one that failed for another reason (an exception) escalates neither.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

TIMEOUT, OUT_OF_MEMORY, OTHER, UNKNOWN = "timeout", "out_of_memory", "other", "unknown"
_SIGNS = (
    (TIMEOUT, re.compile(r"DUE TO TIME LIMIT|\bTIMEOUT\b")),
    (
        OUT_OF_MEMORY,
        re.compile(
            r"oom[-_ ]kill|OUT_OF_MEMORY|[Ee]xceeded (?:job |step )?memory limit|"
            r"[Oo]ut of memory"
        ),
    ),
)
TIME_FACTOR, MEMORY_FACTOR = 2.0, 1.5
# Site caps (README, "Running on Slurm"): minutes of the partitions' MaxTime, MB of their nodes.
CAP_VARIABLES = {
    ("runtime", False): "SAERAND_SLURM_MAX_RUNTIME",
    ("runtime", True): "SAERAND_SLURM_GPU_MAX_RUNTIME",
    ("mem_mb", False): "SAERAND_SLURM_MAX_MEM_MB",
    ("mem_mb", True): "SAERAND_SLURM_GPU_MAX_MEM_MB",
}
DEFAULT_LOGDIR = Path(".snakemake/slurm_logs")


def classify(log_text: str) -> str:
    """Why a cluster job ended, from its log: TIMEOUT, OUT_OF_MEMORY or OTHER."""
    for reason, sign in _SIGNS:
        if sign.search(log_text):
            return reason
    return OTHER


def _wildcards_line(wildcards: Mapping[str, str]) -> str:
    return "wildcards: " + ", ".join(f"{key}={value}" for key, value in wildcards.items())


def earlier_failures(rule: str, wildcards: Mapping[str, str], attempt: int, logdir: Path = DEFAULT_LOGDIR) -> list[str]:
    """How this job's `attempt - 1` earlier attempts ended, oldest first (UNKNOWN where no log)."""
    if attempt <= 1:
        return []
    wildcards = dict(wildcards.items())  # a dict, or Snakemake's Wildcards
    own = logdir / f"rule_{rule}" / "_".join(str(value) for value in wildcards.values())
    # (modification time, text) of each attempt's log, each file read once.
    logs = (
        [(path.stat().st_mtime, path.read_text(errors="replace")) for path in own.glob("*.log")] if own.is_dir() else []
    )
    line = _wildcards_line(wildcards)
    for path in logdir.glob("group_*/**/*.log") if logdir.is_dir() else []:
        text = path.read_text(errors="replace")
        if f"rule {rule}:" in text and (f"{line}\n" in text or not wildcards):
            logs.append((path.stat().st_mtime, text))
    logs.sort(key=lambda log: log[0])
    found = [classify(text) for _, text in logs[-(attempt - 1) :]]
    return [UNKNOWN] * (attempt - 1 - len(found)) + found


def _cap(resource: str, gpu: bool, environ: Mapping[str, str]) -> float | None:
    value = environ.get(CAP_VARIABLES[resource, gpu])
    return float(value) if value else None


def escalated(base: float, failures: Iterable[str], reason: str, factor: float, cap: float | None) -> int:
    """`base` times `factor` for every earlier attempt that ended for `reason` (or unknown), rounded
    up, and no more than `cap` (a request past a partition's limit would never start)."""
    times = sum(1 for failure in failures if failure in (reason, UNKNOWN))
    limit = max(1, math.ceil(base * factor**times))
    return min(limit, int(cap)) if cap else limit


def runtime_minutes(
    base_minutes: float, failures: list[str], gpu: bool, environ: Mapping[str, str] = os.environ, group_size: int = 1
) -> int:
    """A job's time limit. The jobs of a group run one after the other in one cluster job whose
    limit is the sum of theirs, so each of `group_size` members gets its share of the cap."""
    cap = _cap("runtime", gpu, environ)
    return escalated(base_minutes, failures, TIMEOUT, TIME_FACTOR, cap and max(1, cap // group_size))


def memory_mb(base_mb: float, failures: list[str], gpu: bool, environ: Mapping[str, str] = os.environ) -> int:
    return escalated(base_mb, failures, OUT_OF_MEMORY, MEMORY_FACTOR, _cap("mem_mb", gpu, environ))
