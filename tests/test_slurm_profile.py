"""profiles/slurm at the shapes of real clusters, planned without a cluster (a dry run): separate
CPU and GPU partitions, a GPU constraint, and what every group of jobs asks for."""

import os
import re
import subprocess

import yaml

from .conftest import REPO
from .workflow_runs import SNAKEMAKE

SITE = {"SAERAND_SLURM_PARTITION": "cpu", "SAERAND_SLURM_GPU_PARTITION": "gpu", "SAERAND_SLURM_CONSTRAINT": "a100"}
GPU_PARTITION_RULES = {
    "cache_train_shard",
    "cache_eval",
    "train_layer_shard",
    "evaluate_sae",
    "collect_latents",
    "toy_sweep_gpu",
    "finalize_sae",
}  # finalize_sae needs no GPU but shares a cluster job with evaluate_sae


def _dry_run(tmp_path, env, *configfiles) -> subprocess.CompletedProcess:
    command = [
        *SNAKEMAKE[: SNAKEMAKE.index("--profile")],
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config" / "demo.yaml"),
        *map(str, configfiles),
        "-n",
        "-F",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def test_separate_cpu_and_gpu_partitions_give_each_group_one_partition(tmp_path):
    result = _dry_run(tmp_path, SITE)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    jobs = re.findall(r"rule (\w+):\n(?:.*\n)*?\s+resources: (.*)", output)
    assert {rule for rule, _ in jobs} >= GPU_PARTITION_RULES | {"aggregate_metrics"}
    for rule, resources in jobs:
        partition = re.search(r"slurm_partition=(\w*)", resources).group(1)
        assert partition == ("gpu" if rule in GPU_PARTITION_RULES else "cpu"), (rule, resources)
        assert ("constraint=a100" in resources) == (rule in GPU_PARTITION_RULES), (rule, resources)
        assert ("gpu=1" in resources.split(", ")) == (rule in GPU_PARTITION_RULES - {"finalize_sae"}), rule


def test_an_llm_server_group_asks_for_the_servers_gpus_on_the_gpu_partition(tmp_path):
    """The server (two GPUs: tensor parallelism) and its SAEs' jobs (none) share one cluster job,
    so one partition and constraint; the demo's 25 SAEs (5 of the sweep) go to three servers."""
    overlay = tmp_path / "llm.yaml"
    overlay.write_text(yaml.safe_dump({"autointerp": {"explainers": ["tokens", "llm"], "llm": {"gpus": 2, "cpus": 8}}}))
    result = _dry_run(tmp_path, SITE, overlay)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    jobs = re.findall(r"rule (llm_server|autointerp_llm):\n(?:.*\n)*?\s+resources: (.*)", output)
    assert sorted({rule for rule, _ in jobs}) == ["autointerp_llm", "llm_server"]
    assert [sum(r == rule for r, _ in jobs) for rule in ("llm_server", "autointerp_llm")] == [3, 25]
    groups = [block for block in output.split("Group job ")[1:] if block.startswith("autointerp_llm")]
    assert sorted(block.count("rule autointerp_llm:") for block in groups) == [5, 10, 10]  # saes_per_server
    assert all(block.count("rule llm_server:") == 1 for block in groups)
    for rule, resources in jobs:
        assert "slurm_partition=gpu" in resources and "constraint=a100" in resources, (rule, resources)
        assert ("gpu=2" in resources.split(", ")) == (rule == "llm_server"), (rule, resources)


def test_the_profile_batches_only_groups_the_workflow_has():
    from saerand.rules import CPU_AUTOINTERP_GROUP, FINISH_GROUP, LLM_GROUP, SHARD_GROUP

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert set(profile["group-components"]) <= {SHARD_GROUP, FINISH_GROUP, LLM_GROUP, CPU_AUTOINTERP_GROUP}


def _resources_by_rule(output: str) -> dict[str, list[str]]:
    jobs = re.findall(r"rule (\w+):\n(?:.*\n)*?\s+resources: (.*)", output)
    by_rule: dict[str, list[str]] = {}
    for rule, resources in jobs:
        by_rule.setdefault(rule, []).append(resources)
    return by_rule


def test_a_head_job_inside_slurm_asks_for_the_cpus_per_gpu_job_not_all_of_them(tmp_path):
    """Snakemake's head process run as a Slurm job of its own (SLURM_JOB_ID set) plans like a login
    node: GPU jobs ask for SAERAND_SLURM_CPUS_PER_GPU_JOB CPUs (keyed on SLURM_JOB_ID they asked for 2**20)."""
    result = _dry_run(tmp_path, {**SITE, "SLURM_JOB_ID": "41", "SAERAND_SLURM_CPUS_PER_GPU_JOB": "6"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    threads = re.findall(
        r"rule (cache_train_shard|train_layer_shard|evaluate_sae):\n(?:.*\n)*?\s+threads: (\d+)", output
    )
    assert threads and {count for _, count in threads} == {"6"}


def test_a_site_profile_of_ones_own_keeps_each_rules_gpu_node_and_model_constraint(tmp_path):
    """GPUs, one node and a model's node features are the workflow's own resources: a user's
    profile that names only the executor and partitions still asks for them."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text(
        yaml.safe_dump({"executor": "slurm", "jobs": 10, "default-resources": {"slurm_partition": "gpu"}})
    )
    overlay = tmp_path / "constraint.yaml"
    overlay.write_text(yaml.safe_dump({"models": {"tiny-neox": {"gpu_constraint": "a100_80gb"}}}))
    command = [
        *SNAKEMAKE[: SNAKEMAKE.index("--profile")],
        "--profile",
        str(site),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config" / "demo.yaml"),
        str(overlay),
        "-n",
        "-F",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    by_rule = _resources_by_rule(output)
    for rule in GPU_PARTITION_RULES:
        for resources in by_rule[rule]:
            fields = resources.split(", ")
            assert "nodes=1" in fields and ("gpu=1" in fields) == (rule != "finalize_sae"), (rule, resources)
            # toy_sweep_gpu's embedding sweep is of the model, but not one of its jobs: the site's.
            assert ("constraint=a100_80gb" in fields) == (rule != "toy_sweep_gpu"), (rule, resources)
    assert all("gpu=" not in r and "nodes=" not in r for r in by_rule["tokenize_text"])


def test_a_job_that_could_never_finish_in_its_partition_stops_the_plan(tmp_path):
    """A GPU partition of 60 minutes: the paper's larger models' shard caching (Pythia-1B: about 172 min) could never
    finish, so nothing is planned (a local run is not bound: tests/test_workflow.py)."""
    plan = subprocess.run(
        [
            *SNAKEMAKE[: SNAKEMAKE.index("--profile")],
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / "config.yaml"),
            "-n",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **SITE, "SAERAND_SLURM_GPU_MAX_RUNTIME": "60"},
    )
    assert plan.returncode != 0 and "CannotFinish: cache_train_shard (model=pythia-" in plan.stdout + plan.stderr
