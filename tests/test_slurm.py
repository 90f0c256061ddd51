"""The workflow on a real one-node Slurm (tests/slurm_cluster.py) through profiles/slurm.

One study of tests/configs/mini.yaml (two variants) goes through `snakemake --profile` twice:
- run 1: the subject model's training hangs (SIGSTOP) and is killed at its 1-minute time limit,
  then retried with 2 minutes; the aggregation job is killed for memory on every attempt, so the
  run fails there, leaving no output that looks complete.
- run 2: the same command continues where run 1 stopped; aggregation is killed for memory once,
  retried with more, and the results equal those of the local run of the same config.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from saerand.config import validate_config
from saerand.planner import plan

from .conftest import REPO, SCHEMA
from .slurm_cluster import SlurmCluster
from .workflow_runs import MINI, SNAKEMAKE

VARIANTS = ["trained", "control"]
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/(?:rule|group)_([^/]+)/")
# The hung job's limit starts at 1 minute and doubles per attempt, as the workflow's own limits do
# (saerand.costs.runtime_minutes); aggregation gets 100 MB, far below what Python with pandas needs.
HUNG_RULE = "train_embedded_model"


def _can_run_slurm() -> bool:
    return shutil.which("slurmctld") is not None or (os.geteuid() == 0 and shutil.which("apt-get") is not None)


pytestmark = pytest.mark.skipif(not _can_run_slurm(), reason="needs Slurm installed, or root and apt-get to install it")


def _profile(directory: Path, aggregate_mem_mb: int | str) -> Path:
    """profiles/slurm plus the test overlay: fast status polling by squeue (no slurmdbd here) and
    the two injected faults."""
    settings = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    settings.update({
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 2,
        "max-status-checks-per-second": 10,
        "latency-wait": 5,
    })
    settings["set-resources"] = {**settings["set-resources"], HUNG_RULE: {"runtime": "2 ** (attempt - 1)"},
                                 "aggregate_metrics": {"mem_mb": aggregate_mem_mb}}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(settings))
    return directory


def _hang_first_attempt(workdir: Path, process: subprocess.Popen) -> bool:
    """SIGSTOP the first process running HUNG_RULE's script in `workdir`, as a hung job would be."""
    while process.poll() is None:
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                if f".{HUNG_RULE}.py" in cmdline and Path(os.readlink(proc / "cwd")) == workdir:
                    os.kill(int(proc.name), signal.SIGSTOP)
                    return True
            except (OSError, ValueError):
                continue
        time.sleep(0.2)
    return False


def _run(cluster: SlurmCluster, workdir: Path, profile: Path, hang: bool = False) -> tuple[int, str]:
    env = {**cluster.env, "SAERAND_SLURM_PARTITION": cluster.partition,
           "PATH": f"{Path(SNAKEMAKE[0]).parent}:{cluster.env['PATH']}"}
    command = [*SNAKEMAKE[:SNAKEMAKE.index("--profile")], "--directory", str(workdir), "--profile", str(profile),
               "--configfile", str(MINI),
               "--config", f"variants=[{','.join(VARIANTS)}]"]
    log = workdir.parent / f"{profile.name}.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        hung = _hang_first_attempt(workdir, process) if hang else False
        returncode = process.wait(timeout=1500)
    assert hung or not hang, "the job to hang was never seen running"
    return returncode, log.read_text()


def _submitted(log: str, cluster: SlurmCluster) -> list[tuple[str, dict[str, str]]]:
    """(rule or group, Slurm record) of every job the run submitted, in submission order."""
    records = {job["JobId"]: job for job in cluster.finished_jobs()}
    return [(name, records[job_id]) for job_id, name in SUBMITTED.findall(log)]


@pytest.fixture(scope="module")
def slurm_study(tmp_path_factory, mini_run):
    root = tmp_path_factory.mktemp("slurm")
    workdir = root / "study"
    workdir.mkdir()
    # 4 CPUs on this 2-core machine: two 2-thread jobs at once, as on a node with several GPUs.
    with SlurmCluster(root / "cluster", cpus=4, gpus=2, real_memory_mb=12000) as cluster:
        first = _run(cluster, workdir, _profile(root / "run1", 100), hang=True)
        failed_state = {
            "metrics_table": (workdir / "results" / "metrics.csv").exists(),
            "partial_files": [str(p) for p in workdir.rglob(".*partial*")],
            "metrics_files": len(list(workdir.glob("results/*/*/*/layers.*/metrics.json"))),
        }
        second = _run(cluster, workdir, _profile(root / "run2", "100 if attempt == 1 else 4000"))
        yield {"workdir": workdir, "reference": mini_run[0], "failed_state": failed_state,
               "first": (first[0], _submitted(first[1], cluster)), "second": (second[0], _submitted(second[1], cluster)),
               "logs": first[1] + second[1]}


def test_every_job_goes_through_sbatch(slurm_study):
    (first_code, first), (second_code, second) = slurm_study["first"], slurm_study["second"]
    assert first_code != 0 and second_code == 0
    names = [name for name, _ in first + second]
    # Nothing ran outside Slurm but the target rule `all`.
    local = re.findall(r"^localrule (\w+):", slurm_study["logs"], re.MULTILINE)
    assert set(local) <= {"all"}
    groups = [name for name in names if name.startswith(("shard-", "finish-"))]
    assert sorted({g.split("_")[0] for g in groups}) == sorted(
        [f"shard-mini-neox-{v}-{s}" for v in VARIANTS for s in range(3)] + [f"finish-mini-neox-{v}" for v in VARIANTS])
    # One cluster job per planned one, plus the retries: the hung job's second attempt, and four
    # more aggregations for the one planned (three attempts in run 1, two in run 2).
    config = validate_config({**yaml.safe_load(MINI.read_text()), "variants": VARIANTS}, SCHEMA)
    assert len(names) == plan(config).cluster_jobs + 1 + 4


def test_a_job_killed_at_its_time_limit_is_retried_with_more_time(slurm_study):
    _, first = slurm_study["first"]
    attempts = [record for name, record in first if name == HUNG_RULE]
    assert [(r["JobState"], r["TimeLimit"]) for r in attempts] == [("TIMEOUT", "1"), ("COMPLETED", "2")]


def test_a_failed_job_leaves_no_output_that_looks_complete(slurm_study):
    _, first = slurm_study["first"]
    aggregations = [record for name, record in first if name == "aggregate_metrics"]
    assert len(aggregations) == 3 and {r["JobState"] for r in aggregations} == {"FAILED"}
    assert all("mem=100M" in r["Tres"] for r in aggregations)
    state = slurm_study["failed_state"]
    assert state == {"metrics_table": False, "partial_files": [], "metrics_files": 2 * 3}


def test_the_rerun_continues_where_it_stopped_and_matches_a_local_run(slurm_study):
    _, second = slurm_study["second"]
    # Only the failed aggregation and what depends on it: killed for memory once, then given more.
    assert [(name, r["JobState"]) for name, r in second] == [
        ("aggregate_metrics", "FAILED"), ("aggregate_metrics", "COMPLETED"), ("plot_hyperparameter_sweep", "COMPLETED")]
    assert "mem=4000M" in second[1][1]["Tres"]
    on_slurm = pd.read_csv(slurm_study["workdir"] / "results" / "metrics.csv")
    local = pd.read_csv(slurm_study["reference"] / "results" / "metrics.csv")
    local = local[local["variant"].isin(VARIANTS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(on_slurm, local, check_exact=False, rtol=1e-6)
    for figure in ("sae_metrics.png", "hyperparameter_sweep.png"):
        assert (slurm_study["workdir"] / "results" / "figures" / figure).stat().st_size > 10_000
