"""The real Snakemake DAG: lint, the paper's grid as a dry run, config errors, and an end-to-end run."""

import json
import os
from collections import Counter
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from saerand.cache import ActivationCache

from .conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
MINI = REPO / "tests" / "configs" / "mini.yaml"


def snakemake(*args, cwd=REPO, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        header = re.match(r"(?:local)?rule (\w+):", block)
        if header:
            found = re.search(r"wildcards: (.*)", block)
            wildcards = dict(kv.split("=", 1) for kv in found.group(1).split(", ")) if found else {}
            jobs.append((header.group(1), wildcards))
    return jobs


def test_lint_is_clean():
    for config in ("config/config.yaml", "config/demo.yaml"):
        result = snakemake("--lint", "--configfile", config)
        assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_paper_grid_dry_run():
    """One SAE job per (model, variant, layer) of Section 3, one cache job per (model, variant, split)."""
    result = snakemake("--dry-run", "--configfile", "config/config.yaml")
    jobs = planned_jobs(result.stdout)
    sae_jobs = sorted((w["model"], w["variant"], int(w["layer"])) for rule, w in jobs if rule == "train_sae")
    layers = {"pythia-70m": range(6), "pythia-160m": range(12), "pythia-410m": range(0, 24, 2),
              "pythia-1b": range(0, 16, 2), "pythia-6.9b": range(0, 32, 4)}
    variants = ["trained", "rerandomized_incl_emb", "rerandomized_excl_emb", "step0", "control"]
    assert sae_jobs == sorted((m, v, l) for m, ls in layers.items() for v in variants for l in ls)
    counts = {rule: sum(1 for r, _ in jobs if r == rule) for rule, _ in jobs}
    assert counts == {"tokenize_text": 10, "cache_eval": 25, "cache_train_shard": 25 * 10,
                      "train_sae_shard": 230 * 10, "train_sae": 230, "evaluate_sae": 230,
                      "aggregate_metrics": 1, "all": 1}
    shards = sorted({int(w["shard"]) for r, w in jobs if r == "cache_train_shard"})
    assert shards == list(range(10))  # 100M tokens in buffers of about 10M


def test_a_bad_config_stops_before_any_job(tmp_path):
    config = yaml.safe_load(MINI.read_text())
    config["variants"] = ["trained", "re-randomised"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("--dry-run", "--configfile", str(bad), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "config key 'variants[1]': 're-randomised' is not one of" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def run_watching_shards(workdir: Path, *args) -> int:
    """Run snakemake to the end, polling the training shards on disk; returns the most that one
    (model, variant) had at once."""
    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(MINI), "--cores", "2", *args]
    log = workdir / "snakemake-run.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        most = 0
        while process.poll() is None:
            per_variant = Counter(p.parent for p in workdir.glob("results/*/*/cache/train/shard-*.zarr"))
            most = max([most, *per_variant.values()])
            time.sleep(0.05)
    assert process.returncode == 0, log.read_text()[-3000:]
    return most


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory) -> tuple[Path, int]:
    workdir = tmp_path_factory.mktemp("mini")
    return workdir, run_watching_shards(workdir)


def test_end_to_end_mini_study(mini_run):
    mini_run, _ = mini_run
    table = pd.read_csv(mini_run / "results" / "metrics.csv")
    assert len(table) == 5 * 2
    assert set(table["variant"]) == {"trained", "rerandomized_incl_emb", "rerandomized_excl_emb", "step0", "control"}
    assert table["layer"].tolist() == [0, 1] * 5
    assert table["explained_variance"].between(0.0, 1.0).all()
    assert table["cosine_similarity"].between(0.0, 1.0).all()
    assert (table["l0"] <= 4).all() and (table["l1"] > 0).all()
    assert (table["num_latents"] == 128).all()
    assert table["kl_div_score"].notna().all() and (table["kl_with_sae"] >= 0).all()
    assert (table["ce_zero_ablation"] > table["ce_clean"]).loc[table["variant"] == "trained"].all()
    assert table["ce_score_meaningful"].tolist() == (table["variant"] == "trained").tolist()
    assert (mini_run / "results" / "figures" / "sae_metrics.png").stat().st_size > 10_000
    # Every stage wrote its log and benchmark.
    for rule in ("tokenize_text", "cache_train_shard", "cache_eval", "train_sae_shard", "train_sae",
                 "evaluate_sae", "train_embedded_model"):
        assert list((mini_run / "logs" / rule).rglob("*.log")), rule
        assert list((mini_run / "benchmarks" / rule).rglob("*.tsv")), rule


def test_artefacts_carry_provenance(mini_run):
    mini_run, _ = mini_run
    variant_dir = mini_run / "results" / "mini-neox" / "rerandomized_excl_emb"
    cache = ActivationCache(variant_dir / "cache" / "eval.zarr")
    assert cache.attrs["variant"] == "rerandomized_excl_emb" and cache.attrs["seed"] == 0
    assert cache.attrs["revision"] == "main" and cache.attrs["layers"] == [0, 1]
    assert cache.attrs["versions"]["eai-sparsify"] == "1.3.3"
    assert cache.attrs["sequences"] == [0, 64]
    sae_record = json.loads((variant_dir / "layers.1" / "sae" / "provenance.json").read_text())
    assert sae_record["sae_config"]["k"] == 4 and sae_record["layer"] == 1
    metrics = json.loads((variant_dir / "layers.1" / "metrics.json").read_text())
    assert metrics["sae_provenance"]["cache"]["variant"] == "rerandomized_excl_emb"
    step0 = ActivationCache(mini_run / "results" / "mini-neox" / "step0" / "cache" / "eval.zarr")
    assert step0.attrs["revision"] == "step0"
    model_record = json.loads((mini_run / "resources" / "models" / "mini-neox" / "step0" / "provenance.json").read_text())
    assert model_record["revision"] == "step0" and model_record["seed"] == 0


def test_shards_are_deleted_and_disk_stays_bounded(mini_run):
    """Shards are deleted once used; of its three, a (model, variant) never holds more than two at once."""
    mini_run, most_shards = mini_run
    assert 1 <= most_shards <= 2
    assert not list(mini_run.glob("results/*/*/cache/train/shard-*.zarr"))
    assert not list(mini_run.glob("results/*/*/layers.*/checkpoints/shard-*"))


def _sae_weights(path: Path) -> dict:
    return load_file(path / "sae.safetensors")


def test_rebuilding_one_layer_reruns_only_that_layer(mini_run):
    mini_run, _ = mini_run
    results = mini_run / "results" / "mini-neox"
    target = "results/mini-neox/control/layers.1/metrics.json"
    untouched = results / "control" / "layers.0" / "sae" / "sae.safetensors"
    before = untouched.stat().st_mtime_ns
    result = snakemake("--directory", str(mini_run), "--configfile", str(MINI), "--cores", "2",
                       "--forcerun", "train_sae_shard", "--", target)
    jobs = sorted(rule for rule, _ in planned_jobs(result.stdout + result.stderr))
    # Its shards are re-cached (they were temporary), its chain retrained, nothing else.
    assert jobs == ["cache_train_shard"] * 3 + ["evaluate_sae", "train_sae"] + ["train_sae_shard"] * 3
    assert untouched.stat().st_mtime_ns == before


def test_a_killed_run_resumes_from_its_last_checkpoint(mini_run):
    """SIGKILL the whole run mid-chain; the rerun continues after the last finished shard and
    ends with exactly the SAE an uninterrupted run gives."""
    mini_run, _ = mini_run
    layer_dir = mini_run / "results" / "mini-neox" / "trained" / "layers.0"
    reference = _sae_weights(layer_dir / "sae")
    command = [*SNAKEMAKE, "--directory", str(mini_run), "--configfile", str(MINI), "--cores", "1",
               "--forcerun", "train_sae_shard", "--", str(layer_dir.relative_to(mini_run) / "sae")]
    # Kill once the shard-2 training job has started, i.e. after snakemake recorded shard 1 as done.
    started = mini_run / "logs" / "train_sae_shard" / "mini-neox" / "trained" / "layers.0" / "shard-2.log"
    started.unlink()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = layer_dir / "checkpoints" / "shard-1"
    deadline = time.monotonic() + 600
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # a node failure: nothing gets to clean up
    assert process.wait() == -signal.SIGKILL and started.exists() and checkpoint.exists()

    snakemake("--directory", str(mini_run), "--configfile", str(MINI), "--unlock")
    result = snakemake("--directory", str(mini_run), "--configfile", str(MINI), "--cores", "2",
                       "--rerun-incomplete", "--", str(layer_dir.relative_to(mini_run) / "sae"))
    jobs = planned_jobs(result.stdout + result.stderr)
    trained_shards = sorted(int(w["shard"]) for rule, w in jobs if rule == "train_sae_shard")
    assert trained_shards in ([2], [])  # shards 0 and 1 were not redone; 2 unless it had finished
    resumed = _sae_weights(layer_dir / "sae")
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), name
