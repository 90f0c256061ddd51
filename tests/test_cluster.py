"""What a Slurm run checks before it submits anything, and how a Snakemake tells a head process
from the one inside a cluster job."""

from types import SimpleNamespace

import pytest

from saerand.cluster import (
    ALL_CPUS,
    ClusterSetupError,
    check_account,
    check_free_space,
    gpu_job_threads,
    in_job_step,
    slurm_account,
)

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


def test_a_study_larger_than_the_free_space_is_refused_with_the_numbers(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 9 * 10**11, 10**11))  # 100 GB free
    too_big = {"training activations (temporary)": 2 * 10**11, "SAEs": 10**9}
    with pytest.raises(ClusterSetupError, match=r"100 GB free, and the study needs 201 GB more .*training activations"):
        check_free_space(too_big, tmp_path, environ={})
    check_free_space(too_big, tmp_path, environ={"SAERAND_SKIP_SPACE_CHECK": "1"})
    check_free_space({"SAEs": 10**11 - 1}, tmp_path, environ={})
    # What the study's results already hold counts as written.
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "sae.bin").write_bytes(b"\0" * 4096)
    check_free_space({"SAEs": 10**11 + 4000}, tmp_path, environ={})
    with pytest.raises(ClusterSetupError):
        check_free_space({"SAEs": 10**11 + 5000}, tmp_path, environ={})


def test_a_job_whose_resources_need_inputs_not_there_yet_is_judged_when_it_runs():
    class Unready:
        rule, is_local = SimpleNamespace(name="train_layer_shard"), False

        @property
        def resources(self):
            raise NotADirectoryError("results/m/v/layers.1/checkpoints/shard-2")

    check_account([Unready(), _job("cache_train_shard", "lab")], environ={})
    with pytest.raises(ClusterSetupError, match="tokenize_text"):
        check_account([Unready(), _job("tokenize_text")], environ={})
