"""The LLM explainer's job group on the real one-node Slurm (tests/slurm_cluster.py) through
profiles/slurm: one vLLM server (the tiny double, on this CPU) and the SAEs it serves go to the GPU
partition as one cluster job that asks for the server's GPU and everyone's CPUs, and the server is
stopped when they are done. Starts from a finished local mini study (tests/conftest.py, mini_run).

One SAE per server here: inside its cluster job Snakemake runs a group with the cores the job step
sees, and this 2-core machine (which Slurm counts as 4, without binding) cannot hold a server and
two SAEs' jobs at once. Several SAEs per server are run locally in tests/test_workflow.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd

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
        command = [*SNAKEMAKE[:SNAKEMAKE.index("--profile")], "--directory", str(workdir),
                   "--profile", str(_profile(tmp_path / "profile")), "--configfile", str(MINI), str(overlay),
                   "--config", "variants=[trained]"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-4000:]
        records = {job["JobId"]: job for job in cluster.finished_jobs()}
    submitted = [(name, records[job_id]) for job_id, name, _ in SUBMITTED.findall(log)]
    groups = [record for name, record in submitted if name.startswith("autointerp_llm")]
    # One cluster job per server (2 layers' SAEs and the sweep's point on layer 1): its GPU, its CPU
    # and one for its SAE, on the GPU partition.
    assert len(groups) == 3 and all(group["JobState"] == "COMPLETED" for group in groups)
    for group in groups:
        assert group["Partition"] == GPU_PARTITION and "gres/gpu=1" in group["Tres"] and "cpu=2," in group["Tres"]
    assert {name for name, _ in submitted} - {"aggregate_metrics", "autointerp_figures",
                                               "plot_hyperparameter_sweep"} == {name for name, _ in submitted
                                                                                 if name.startswith("autointerp_llm")}
    for server_log in (workdir / "logs" / "llm_server").glob("llm-*.log"):
        pid = int(re.search(r"Started server process \[(\d+)\]", server_log.read_text()).group(1))
        assert not Path(f"/proc/{pid}").exists()
    table = pd.read_csv(workdir / "results" / "metrics.csv")
    main = table["expansion_factor"] == 4
    assert set(table["variant"]) == {"trained"} and table.loc[main, "fuzz_auroc_llm"].between(0, 1).all()
    assert (table.loc[main, "latents_scored_llm"] == 8).all()
