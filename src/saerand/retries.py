"""Cluster limits for retried jobs: more time only after a time-out, more memory only after an
out-of-memory kill, and never past what the partition and its nodes allow.

The caps are the site's (SAERAND_SLURM_*_MAX_* variables) or, where those are unset and Slurm
answers, the partitions' own MaxTime and node memory (`sinfo`). A job that cannot finish within its
partition's time limit and cannot resume (it starts over at every attempt) is refused before
anything is submitted; one that timed out at the cap is not run again at the same limit.

A job's earlier attempts are read from the logs the Slurm executor keeps per job
(`<slurm logdir>/rule_<rule>/<wildcards>/<jobid>.log`, or `group_<group>/...` for a job that ran in
a group, found by the job's own `wildcards:` line there). Slurm writes why it killed a job into that
log ("CANCELLED ... DUE TO TIME LIMIT", "Exceeded job memory limit", "oom-kill"). An attempt whose
log is missing (another executor, logs deleted) counts as both, as a plain attempt-scaled retry
would; one that failed for another reason (an exception) escalates neither.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
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
# The partitions the profile sends jobs to (profiles/slurm): unset, the cluster's default one.
PARTITION_VARIABLES = {
    False: ("SAERAND_SLURM_PARTITION",),
    True: ("SAERAND_SLURM_GPU_PARTITION", "SAERAND_SLURM_PARTITION"),
}
DEFAULT_LOGDIR = Path(".snakemake/slurm_logs")


class CannotFinish(RuntimeError):
    """A job that needs more time than its partition allows and starts over at every attempt."""


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


def slurm_minutes(text: str) -> float | None:
    """Minutes of a Slurm time limit as sinfo prints it ([days-]hours:minutes:seconds, minutes:seconds,
    or minutes); None for none ("infinite", "UNLIMITED", "n/a")."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(part) for part in clock.split(":")]
    if len(parts) == 1:  # minutes alone
        parts = [0.0, parts[0], 0.0]
    elif len(parts) == 2:  # minutes:seconds
        parts = [0.0, *parts]
    hours, minutes, seconds = parts
    return (float(days or 0) * 24 + hours) * 60 + minutes + seconds / 60


@functools.cache
def partition_limits(partition: str) -> dict[str, float]:
    """{"runtime": MaxTime in minutes, "mem_mb": the smallest node's memory} of a partition ("" for
    the cluster's default one) as sinfo reports it; empty where Slurm is absent or does not answer,
    or reports no limit."""
    if shutil.which("sinfo") is None:
        return {}
    command = ["sinfo", "--noheader", "--format", "%P|%l|%m"] + (["--partition", partition] if partition else [])
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if result.returncode != 0:
        return {}
    rows = [line.split("|") for line in result.stdout.splitlines() if line.count("|") == 2]
    # The default partition is marked with a star.
    rows = [row for row in rows if (row[0].rstrip("*") == partition if partition else row[0].endswith("*"))]
    limits: dict[str, float] = {}
    runtimes = [minutes for _, limit, _ in rows if (minutes := slurm_minutes(limit)) is not None]
    memories = [float(memory.rstrip("+")) for _, _, memory in rows if memory.rstrip("+").isdigit()]
    if runtimes:
        limits["runtime"] = min(runtimes)
    if memories:
        limits["mem_mb"] = min(memories)
    return limits


def _cap(resource: str, gpu: bool, environ: Mapping[str, str] | None) -> float | None:
    """The site's cap, or the partition's own limit where Slurm reports one; none for `environ` None
    (jobs that do not go to Slurm, which no partition bounds)."""
    if environ is None:
        return None
    value = environ.get(CAP_VARIABLES[resource, gpu])
    if value:
        return float(value)
    partition = next((environ[name] for name in PARTITION_VARIABLES[gpu] if environ.get(name)), "")
    return partition_limits(partition).get(resource)


def escalated(base: float, failures: Iterable[str], reason: str, factor: float, cap: float | None) -> int:
    """`base` times `factor` for every earlier attempt that ended for `reason` (or unknown), rounded
    up, and no more than `cap` (a request past a partition's limit would never start)."""
    times = sum(1 for failure in failures if failure in (reason, UNKNOWN))
    limit = max(1, math.ceil(base * factor**times))
    return min(limit, int(cap)) if cap else limit


def runtime_cap(gpu: bool, environ: Mapping[str, str] | None = os.environ) -> float | None:
    """Minutes a job on the GPU (or CPU) partition may ask for at most (None: no limit known)."""
    return _cap("runtime", gpu, environ)


def runtime_share(
    base_minutes: float, gpu: bool, environ: Mapping[str, str] | None = os.environ, group_minutes: float | None = None
) -> int | None:
    """The most time a job may ask for: the partition's cap, or, for a member of a group whose jobs
    run one after the other in one cluster job (its limit the sum of theirs), the member's share of
    the cap in proportion to its estimate (`group_minutes`: the estimates of the whole group)."""
    cap = runtime_cap(gpu, environ)
    if not cap:
        return None
    return max(1, math.floor(cap * base_minutes / max(group_minutes or base_minutes, base_minutes)))


def runtime_minutes(
    base_minutes: float,
    failures: list[str],
    gpu: bool,
    environ: Mapping[str, str] | None = os.environ,
    group_minutes: float | None = None,
    must_fit: str | None = None,
) -> int:
    """A job's time limit: its estimate, doubled after each time-out, within its share of the cap.
    `must_fit` names a job that starts over at every attempt: if its estimate is past its share, it
    could never finish, and planning stops with CannotFinish."""
    share = runtime_share(base_minutes, gpu, environ, group_minutes)
    if must_fit and share is not None and math.ceil(base_minutes) > share:
        where = "its group's cluster job" if group_minutes and group_minutes > base_minutes else "one cluster job"
        total = max(group_minutes or 0, base_minutes)
        raise CannotFinish(
            f"{must_fit} needs about {math.ceil(total)} min in {where}, past the partition's time limit of "
            f"{int(_cap('runtime', gpu, environ))} min ({CAP_VARIABLES['runtime', gpu]} or sinfo), and it cannot "
            "resume where a time-out stopped it. Use a partition with a longer MaxTime (and set that variable), "
            "or make its jobs smaller in the config (fewer tokens per shard: tokens.buffer_tokens; fewer layers; "
            "a smaller toy dataset)."
        )
    return escalated(base_minutes, failures, TIMEOUT, TIME_FACTOR, share)


def time_exhausted(
    base_minutes: float,
    failures: list[str],
    gpu: bool,
    environ: Mapping[str, str] | None = os.environ,
    group_minutes: float | None = None,
) -> int:
    """The time limit (minutes) at which an earlier attempt of this run timed out with all the time
    its partition allows (0: none did): a job that starts over would only time out again."""
    share = runtime_share(base_minutes, gpu, environ, group_minutes)
    for tried, failure in enumerate(failures):
        limit = escalated(base_minutes, failures[:tried], TIMEOUT, TIME_FACTOR, share)
        if share is not None and failure == TIMEOUT and limit >= share:
            return limit
    return 0


def memory_mb(base_mb: float, failures: list[str], gpu: bool, environ: Mapping[str, str] | None = os.environ) -> int:
    return escalated(base_mb, failures, OUT_OF_MEMORY, MEMORY_FACTOR, _cap("mem_mb", gpu, environ))
