"""The LLM explainer's job group on the real one-node Slurm (tests/slurm_cluster.py) through
profiles/slurm: one vLLM server (the tiny double, on this CPU) and the SAEs it serves go to the GPU
partition as one cluster job that asks for the server's GPU and everyone's CPUs, and the server is
stopped when they are done. Starts from a finished local mini study (tests/conftest.py, mini_run).

One SAE per server here: inside its cluster job Snakemake runs a group with the cores the job step
sees, and this 2-core machine (which Slurm counts as 4, without binding) cannot hold a server and
two SAEs' jobs at once. Several SAEs per server are run locally in tests/test_workflow.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from .llm_double import write_llm_config
from .slurm_cluster import SlurmCluster
from .test_slurm import CPU_PARTITION, GPU_PARTITION, SITE, SUBMITTED, _profile, pytestmark  # noqa: F401
from .workflow_runs import MINI, SNAKEMAKE


def test_an_llm_server_and_its_saes_run_as_one_gpu_cluster_job(tmp_path, mini_run, tiny_llama):
    workdir = tmp_path / "study"
    shutil.copytree(mini_run[0], workdir, symlinks=True)
    overlay = write_llm_config(tmp_path / "llm.yaml", tiny_llama, saes_per_server=1)
    with SlurmCluster(tmp_path / "cluster", cpus=4, gpus=2, real_memory_mb=12000,
                      partitions={CPU_PARTITION: 2, GPU_PARTITION: None}) as cluster:
        env = {**cluster.env, **SITE, "PATH": f"{Path(SNAKEMAKE[0]).parent}:{cluster.env['PATH']}"}
        # The study's two SAEs of the trained model (the table and figures are the local test's).
        targets = [f"results/mini-neox/trained/x4-k4/layers.{layer}/autointerp/llm" for layer in (0, 1)]
        command = [*SNAKEMAKE[:SNAKEMAKE.index("--profile")], "--directory", str(workdir),
                   "--profile", str(_profile(tmp_path / "profile")), "--configfile", str(MINI), str(overlay),
                   "--", *targets]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-4000:]
        records = {job["JobId"]: job for job in cluster.finished_jobs()}
    submitted = [(name, records[job_id]) for job_id, name, _ in SUBMITTED.findall(log)]
    groups = [record for name, record in submitted if name.startswith("autointerp_llm")]
    # One cluster job per server: its CPU and one for its SAE, on the GPU partition (the GPU it asks
    # for is tested in tests/test_slurm_profile.py; Slurm's job record here does not list it).
    assert len(groups) == 2 and all(group["JobState"] == "COMPLETED" for group in groups)
    for group in groups:
        assert group["Partition"] == GPU_PARTITION and "cpu=2," in group["Tres"]
    assert len(submitted) == 2  # nothing upstream ran again
    for server_log in (workdir / "logs" / "llm_server").glob("llm-*.log"):
        pid = int(re.search(r"Started server process \[(\d+)\]", server_log.read_text()).group(1))
        assert not Path(f"/proc/{pid}").exists()
    for target in targets:
        summary = json.loads((workdir / target / "summary.json").read_text())
        assert summary["scored"] == 8 and 0 <= summary["fuzz_auroc"] <= 1 and summary["fuzz_unparsed"] == 0
