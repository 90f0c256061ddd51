"""Retried cluster jobs: time grows after a time-out, memory after an out-of-memory kill, both
stop at the site's caps; what Slurm wrote into each attempt's log says which."""

import os

from saerand.retries import (
    OTHER,
    OUT_OF_MEMORY,
    TIMEOUT,
    UNKNOWN,
    classify,
    earlier_failures,
    memory_mb,
    runtime_minutes,
)

# What slurmstepd writes into a job's log when it kills it (Slurm 22-24).
TIMED_OUT = "slurmstepd: error: *** JOB 41 ON node1 CANCELLED AT 2026-11-25T21:00:00 DUE TO TIME LIMIT ***\n"
OOM_ACCOUNTING = (
    "slurmstepd: error: Job 42 exceeded memory limit (120 > 100), being killed\n"
    "slurmstepd: error: Exceeded job memory limit\n"
)
OOM_CGROUP = (
    "slurmstepd: error: Detected 1 oom_kill event in StepId=43.0. Some of the step tasks have been OOM Killed.\n"
)
EXCEPTION = "Traceback (most recent call last):\nValueError: no metrics files to aggregate\n"


def test_slurm_kill_messages_are_classified():
    assert classify(TIMED_OUT) == TIMEOUT
    assert classify(OOM_ACCOUNTING) == OUT_OF_MEMORY and classify(OOM_CGROUP) == OUT_OF_MEMORY
    assert classify(EXCEPTION) == OTHER


def test_time_grows_only_after_time_outs_and_memory_only_after_oom_kills():
    assert runtime_minutes(60, [], gpu=False, environ={}) == 60
    assert runtime_minutes(60, [TIMEOUT, TIMEOUT], gpu=False, environ={}) == 240
    assert runtime_minutes(60, [OUT_OF_MEMORY, OTHER], gpu=False, environ={}) == 60
    assert memory_mb(1000, [OUT_OF_MEMORY], gpu=False, environ={}) == 1500
    assert memory_mb(1000, [TIMEOUT, OTHER], gpu=False, environ={}) == 1000
    # No log to read (another executor): both grow, as a plain attempt-scaled retry would.
    assert runtime_minutes(60, [UNKNOWN], gpu=True, environ={}) == 120
    assert memory_mb(1000, [UNKNOWN], gpu=True, environ={}) == 1500


def test_requests_stop_at_the_partition_caps():
    caps = {
        "SAERAND_SLURM_GPU_MAX_RUNTIME": "1440",
        "SAERAND_SLURM_MAX_RUNTIME": "90",
        "SAERAND_SLURM_GPU_MAX_MEM_MB": "200000",
    }
    # A 6.9B shard group of 11 h: 22 h, then 24 h (the cap), not 44 h.
    assert runtime_minutes(660, [TIMEOUT], gpu=True, environ=caps) == 1320
    assert runtime_minutes(660, [TIMEOUT, TIMEOUT], gpu=True, environ=caps) == 1440
    assert runtime_minutes(120, [], gpu=False, environ=caps) == 90  # even a first estimate past the cap
    assert memory_mb(150_000, [OUT_OF_MEMORY], gpu=True, environ=caps) == 200_000
    # One of the 9 jobs of a shard group (a shard and 8 SAEs): a ninth of the cap each, so the
    # group's limit (their sum) stays within the partition's.
    assert runtime_minutes(660, [TIMEOUT], gpu=True, environ=caps, group_size=9) == 160
    assert memory_mb(150_000, [OUT_OF_MEMORY], gpu=False, environ=caps) == 225_000  # no CPU node cap set


def _log(path, text, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_earlier_attempts_are_read_from_the_executor_logs(tmp_path):
    from snakemake.iocontainers import Wildcards

    wildcards = Wildcards(fromdict={"model": "m", "variant": "trained"})  # as resource functions get them
    own = tmp_path / "rule_cache_eval" / "m_trained"
    _log(own / "10.log", "old run, finished\n", 100)
    _log(own / "11.log", TIMED_OUT, 200)
    _log(own / "12.log", OOM_CGROUP, 300)
    _log(tmp_path / "rule_cache_eval" / "m_control" / "13.log", TIMED_OUT, 400)  # another job
    assert earlier_failures("cache_eval", wildcards, 1, tmp_path) == []
    assert earlier_failures("cache_eval", wildcards, 2, tmp_path) == [OUT_OF_MEMORY]
    assert earlier_failures("cache_eval", wildcards, 3, tmp_path) == [TIMEOUT, OUT_OF_MEMORY]
    # A member of a group job: the group's log names it by its wildcards line.
    member = {"model": "m", "variant": "trained", "layer": "1", "expansion": "4", "k": "4"}
    _log(
        tmp_path / "group_finish-m-trained_1" / "20.log",
        "rule evaluate_sae:\n    wildcards: model=m, variant=trained, layer=1, expansion=4, k=4\n" + TIMED_OUT,
        500,
    )
    _log(
        tmp_path / "group_finish-m-trained_2" / "21.log",
        "rule evaluate_sae:\n    wildcards: model=m, variant=trained, layer=0, expansion=4, k=4\n" + OOM_CGROUP,
        600,
    )
    assert earlier_failures("evaluate_sae", member, 2, tmp_path) == [TIMEOUT]
    # Layer 1 is not layer 10.
    assert earlier_failures("evaluate_sae", {**member, "k": "4", "layer": "1"}, 2, tmp_path) == [TIMEOUT]
    _log(
        tmp_path / "group_finish-m-trained_3" / "22.log",
        "rule evaluate_sae:\n    wildcards: model=m, variant=trained, layer=10, expansion=4, k=4\n" + OOM_CGROUP,
        700,
    )
    assert earlier_failures("evaluate_sae", member, 2, tmp_path) == [TIMEOUT]
    # Fewer logs than attempts (logs removed, or another executor): the rest are unknown.
    assert earlier_failures("finalize_sae", member, 3, tmp_path) == [UNKNOWN, UNKNOWN]
