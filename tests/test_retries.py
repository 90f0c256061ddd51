"""Retried cluster jobs: time grows after a time-out, memory after an out-of-memory kill, both
stop at the site's caps; what Slurm wrote into each attempt's log says which."""

import os

import pytest

from saerand.retries import (
    OTHER,
    OUT_OF_MEMORY,
    TIMEOUT,
    UNKNOWN,
    CannotFinish,
    classify,
    earlier_failures,
    memory_mb,
    partition_limits,
    runtime_minutes,
    runtime_share,
    slurm_minutes,
    time_exhausted,
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
    assert runtime_minutes(120, [], gpu=False, environ=caps) == 90  # a default guess past the cap: capped
    assert memory_mb(150_000, [OUT_OF_MEMORY], gpu=True, environ=caps) == 200_000
    assert memory_mb(150_000, [OUT_OF_MEMORY], gpu=False, environ=caps) == 225_000  # no CPU node cap set


def test_a_group_member_gets_the_cap_in_proportion_to_its_estimate():
    caps = {"SAERAND_SLURM_GPU_MAX_RUNTIME": "1440"}
    # A shard group of 20 h: a 60-minute caching job and 19 hour-long layer jobs. Each may grow to
    # its share of the cap (the group's limit is the sum), so a retry of the group fits the partition.
    assert runtime_share(60, gpu=True, environ=caps, group_minutes=1200) == 72
    assert runtime_minutes(60, [TIMEOUT], gpu=True, environ=caps, group_minutes=1200) == 72
    assert runtime_minutes(60, [], gpu=True, environ=caps, group_minutes=1200, must_fit="layer job") == 60
    # 40 h of estimates in one cluster job: it could never finish, so planning stops, naming the job.
    with pytest.raises(CannotFinish, match=r"layer job needs about 2400 min in its group's cluster job.*1440 min"):
        runtime_minutes(60, [], gpu=True, environ=caps, group_minutes=2400, must_fit="layer job")
    # A job that resumes (must_fit=None) is capped and runs: each attempt gets further.
    assert runtime_minutes(2000, [], gpu=True, environ=caps) == 1440


def test_a_job_that_timed_out_at_the_cap_stops_instead_of_timing_out_again():
    caps = {"SAERAND_SLURM_GPU_MAX_RUNTIME": "1440"}
    assert time_exhausted(660, [], gpu=True, environ=caps) == 0
    assert time_exhausted(660, [TIMEOUT], gpu=True, environ=caps) == 0  # 660 min; 1320 may do
    assert time_exhausted(660, [TIMEOUT, TIMEOUT], gpu=True, environ=caps) == 0  # 1320; 1440 may do
    assert time_exhausted(660, [TIMEOUT, TIMEOUT, TIMEOUT], gpu=True, environ=caps) == 1440
    # Stopped once for it (an error of its own): it stays stopped within the run.
    assert time_exhausted(1000, [TIMEOUT, TIMEOUT, OTHER], gpu=True, environ=caps) == 1440
    assert time_exhausted(660, [OUT_OF_MEMORY, OTHER], gpu=True, environ=caps) == 0
    assert time_exhausted(660, [TIMEOUT] * 3, gpu=True, environ={}) == 0  # no cap known: time grows


def test_slurm_time_limits_are_read_as_sinfo_prints_them():
    assert slurm_minutes("1-00:00:00") == 1440
    assert slurm_minutes("2-12:30:00") == 3630
    assert slurm_minutes("04:00:00") == 240
    assert slurm_minutes("30:00") == 30
    assert slurm_minutes("45") == 45
    assert slurm_minutes("infinite") is None and slurm_minutes("UNLIMITED") is None


def fake_sinfo(directory, output: str, monkeypatch):
    """A test double of sinfo on PATH that prints `output` and records its arguments."""
    script = directory / "sinfo"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {directory}/calls\nprintf '%s' '{output}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")
    partition_limits.cache_clear()


def test_unset_caps_come_from_the_partitions_own_limits(tmp_path, monkeypatch):
    fake_sinfo(tmp_path, "cpu*|2-00:00:00|256000\ngpu|1-00:00:00|512000+\ngpu|1-00:00:00|480000\n", monkeypatch)
    site = {"SAERAND_SLURM_GPU_PARTITION": "gpu"}
    try:
        assert runtime_minutes(660, [TIMEOUT, TIMEOUT], gpu=True, environ=site) == 1440
        assert memory_mb(400_000, [OUT_OF_MEMORY], gpu=True, environ=site) == 480_000  # the smallest node
        assert "--partition gpu" in (tmp_path / "calls").read_text()
        # No partition named: the cluster's default one (starred), for CPU jobs and GPU jobs alike.
        assert runtime_minutes(2000, [TIMEOUT], gpu=False, environ={}) == 2880
        # A cap set by the site wins over what sinfo says.
        assert (
            runtime_minutes(660, [TIMEOUT], gpu=True, environ={**site, "SAERAND_SLURM_GPU_MAX_RUNTIME": "600"}) == 600
        )
    finally:
        partition_limits.cache_clear()


def test_without_slurm_there_are_no_caps(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo
    partition_limits.cache_clear()
    try:
        assert runtime_minutes(660, [TIMEOUT, TIMEOUT], gpu=True, environ={}) == 2640
    finally:
        partition_limits.cache_clear()


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
