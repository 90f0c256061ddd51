"""The LLM explainer's job group on the real one-node Slurm (tests/slurm_cluster.py) through
profiles/slurm: one vLLM server (the tiny double, on this CPU) and the SAEs it serves go to the GPU
partition as one cluster job that asks for the server's GPU and CPUs (the SAEs' jobs are clients of
it and ask for none), and the server is stopped when they are done. Starts from a finished local
mini study (tests/conftest.py, mini_snapshot).

The LLM comes from a hub (tests/hub_double.py) as on a real cluster: `snakemake prefetch` fetches it
where Snakemake runs (the login node), then the hub goes away and the cluster job serves the
fetched copy, offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from .hub_double import HubDouble
from .llm_double import write_llm_config
from .slurm_cluster import SlurmCluster
from .test_slurm import CPU_PARTITION, GPU_PARTITION, SITE, SUBMITTED, _profile, pytestmark  # noqa: F401
from .workflow_runs import MINI, SNAKEMAKE


def test_an_llm_server_and_its_saes_run_as_one_gpu_cluster_job_from_the_fetched_weights(
    tmp_path, mini_snapshot, tiny_llama
):
    workdir = tmp_path / "study"
    shutil.copytree(mini_snapshot, workdir, symlinks=True)
    overlay = write_llm_config(tmp_path / "llm.yaml", "owner/tiny-llama", saes_per_server=2)
    with SlurmCluster(
        tmp_path / "cluster", cpus=4, gpus=2, real_memory_mb=12000, partitions={CPU_PARTITION: 2, GPU_PARTITION: None}
    ) as cluster:
        env = {
            **cluster.env,
            **SITE,
            "PATH": f"{Path(SNAKEMAKE[0]).parent}:{cluster.env['PATH']}",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        # The study's two SAEs of the trained model (the table and figures are the local test's).
        targets = [f"results/mini-neox/trained/x4-k4/layers.{layer}/autointerp/llm" for layer in (0, 1)]
        command = [
            *SNAKEMAKE[: SNAKEMAKE.index("--profile")],
            "--directory",
            str(workdir),
            "--profile",
            str(_profile(tmp_path / "profile")),
            "--configfile",
            str(MINI),
            str(overlay),
            "--",
        ]
        with HubDouble(tmp_path / "hub") as hub:
            hub.add_repo("model", "owner/tiny-llama", "main", tiny_llama)
            fetch = subprocess.run(
                [*command, "prefetch"], env={**env, "HF_ENDPOINT": hub.url}, capture_output=True, text=True, timeout=300
            )
            assert fetch.returncode == 0, (fetch.stdout + fetch.stderr)[-4000:]
            hub_url = hub.url
        # The hub is gone: anything that reached for it would fail.
        result = subprocess.run(
            [*command, *targets], env={**env, "HF_ENDPOINT": hub_url}, capture_output=True, text=True, timeout=1200
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-4000:]
        records = {job["JobId"]: job for job in cluster.finished_jobs()}
    assert "localrule fetch_hub" in fetch.stdout + fetch.stderr and "fetch_hub" not in log
    assert (workdir / "resources/huggingface/saerand-fetched/models--owner--tiny-llama@main.json").is_file()
    submitted = [(name, records[job_id]) for job_id, name, _ in SUBMITTED.findall(log)]
    groups = [record for name, record in submitted if name.startswith("autointerp_llm")]
    # One cluster job for the server and both SAEs: its CPU, on the GPU partition (the GPU it asks
    # for is tested in tests/test_slurm_profile.py; Slurm's job record here does not list it).
    assert len(groups) == 1 and groups[0]["JobState"] == "COMPLETED"
    assert groups[0]["Partition"] == GPU_PARTITION and "cpu=1," in groups[0]["Tres"]
    assert len(submitted) == 1  # nothing upstream ran again
    for server_log in (workdir / "logs" / "llm_server").glob("llm-*.log"):
        pid = int(re.search(r"Started server process \[(\d+)\]", server_log.read_text()).group(1))
        assert not Path(f"/proc/{pid}").exists()
    for target in targets:
        summary = json.loads((workdir / target / "summary.json").read_text())
        assert summary["scored"] == 8 and 0 <= summary["fuzz_auroc"] <= 1 and summary["fuzz_unparsed"] == 0
