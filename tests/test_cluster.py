"""What a Slurm run checks before it submits anything, and how a Snakemake tells a head process
from the one inside a cluster job."""

from types import SimpleNamespace

import pytest

from saerand.cluster import ALL_CPUS, ClusterSetupError, check_account, gpu_job_threads, in_job_step, slurm_account

HEAD = ["snakemake", "--profile", "profiles/slurm"]
# What the Slurm executor's job script runs inside a cluster job.
JOB_STEP = ["python", "-m", "snakemake", "--executor", "slurm-jobstep", "--jobs", "1", "--mode", "remote"]


def _job(rule: str, account: str = "", local: bool = False) -> SimpleNamespace:
    return SimpleNamespace(rule=SimpleNamespace(name=rule), is_local=local, resources={"slurm_account": account})


def test_a_head_job_inside_slurm_plans_like_a_login_node():
    in_a_head_job = {"SLURM_JOB_ID": "41", "SAERAND_SLURM_CPUS_PER_GPU_JOB": "8"}
    assert not in_job_step(HEAD) and in_job_step(JOB_STEP) and in_job_step(["--executor=slurm-jobstep"])
    assert gpu_job_threads(HEAD, in_a_head_job) == 8
    assert gpu_job_threads(HEAD, {"SLURM_JOB_ID": "41"}) == 2
    assert gpu_job_threads(JOB_STEP, {"SLURM_JOB_ID": "42"}) == ALL_CPUS


def test_no_job_is_submitted_without_an_account():
    jobs = [_job("cache_train_shard"), _job("aggregate_metrics", local=True), _job("tokenize_text")]
    with pytest.raises(
        ClusterSetupError, match=r"No Slurm account for 2 rule\(s\).*cache_train_shard.*SAERAND_SLURM_ACCOUNT"
    ):
        check_account(jobs, environ={})
    check_account([_job("cache_train_shard", "lab")], environ={"SAERAND_SLURM_ACCOUNT": "lab"})
    # A cluster without accounts says so; the jobs then carry none.
    assert slurm_account({"SAERAND_SLURM_ACCOUNT": "none"}) == ""
    assert slurm_account({"SAERAND_SLURM_ACCOUNT": " lab "}) == "lab"
    check_account(jobs, environ={"SAERAND_SLURM_ACCOUNT": "none"})
