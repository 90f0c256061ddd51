"""The real Snakemake DAG: lint, the paper's grid as a dry run, config errors, and an end-to-end run."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from saerand.cache import ActivationCache
from saerand.dag import planned_jobs
from saerand.paths import sae_directory

from .conftest import REPO
from .llm_double import write_llm_config
from .test_retries import fake_sinfo
from .workflow_runs import MINI, SNAKEMAKE, run_watching_shards, snakemake, start_from_built_model


def test_lint_is_clean():
    for config in ("config/config.yaml", "config/demo.yaml"):
        result = snakemake("--lint", "--configfile", config)
        assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_paper_grid_dry_run(tmp_path):
    """One SAE per (model, variant, layer) of Section 3 at expansion 64, k 32, plus the Figure 11
    sweep on Pythia-160M; one cache job per (model, variant, split or shard); Section 4's toy sweeps;
    and what they read from the network, fetched first. Planned as a new user would: a plain dry run
    (no profile, no --cores) with nothing downloaded."""
    command = [
        *SNAKEMAKE[: SNAKEMAKE.index("--profile")],
        "--dry-run",
        "--configfile",
        str(REPO / "config" / "config.yaml"),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    sae_jobs = sorted(
        (w["model"], w["variant"], int(w["layer"]), int(w["expansion"]), int(w["k"]))
        for rule, w in jobs
        if rule == "finalize_sae"
    )
    layers = {
        "pythia-70m": range(6),
        "pythia-160m": range(12),
        "pythia-410m": range(0, 24, 2),
        "pythia-1b": range(0, 16, 2),
        "pythia-6.9b": range(0, 32, 4),
    }
    variants = ["trained", "rerandomized_incl_emb", "rerandomized_excl_emb", "step0", "control"]
    study = [(m, v, layer, 64, 32) for m, model_layers in layers.items() for v in variants for layer in model_layers]
    sweep = [
        ("pythia-160m", v, layer, e, k)
        for v in variants
        for layer in range(12)
        for e in (16, 32, 64, 128)
        for k in (16, 32)
        if (e, k) != (64, 32)
    ]
    assert len(study) == 230 and len(sweep) == 420
    assert sae_jobs == sorted(study + sweep)
    counts = {rule: sum(1 for r, _ in jobs if r == rule) for rule, _ in jobs}
    assert counts == {
        "tokenize_text": 15,
        "cache_eval": 25,
        "cache_train_shard": 25 * 10,
        "collect_latents": 25,
        "autointerp_cpu": 650,
        "autointerp_llm": 650,
        "llm_server": 65,
        "autointerp_figures": 10,
        "latent_browser": 10,
        "train_layer_shard": 230 * 10,
        "finalize_sae": 650,
        "evaluate_sae": 650,
        "aggregate_metrics": 1,
        "claims": 1,
        "training_curves": 5,
        "plot_hyperparameter_sweep": 1,
        "all": 1,
        "toy_figure4": 1,
        "toy_sweep": 10,
        "toy_sweep_gpu": 4 + 5,
        "toy_aggregate": 1 + 4 + 5,
        "fetch_hub": 12,
        "fetch_glove": 1,
    }
    shards = sorted({int(w["shard"]) for r, w in jobs if r == "cache_train_shard"})
    assert shards == list(range(10))  # 100M tokens in buffers of about 10M
    toy = sorted((w["toy_dataset"], int(w["seed"])) for r, w in jobs if r.startswith("toy_sweep"))
    assert toy[:4] == [
        ("embeddings-pythia-160m", 0),
        ("embeddings-pythia-1b", 0),
        ("embeddings-pythia-410m", 0),
        ("embeddings-pythia-6.9b", 0),
    ]
    assert [seed for dataset, seed in toy if dataset == "superposition"] == list(range(10))
    # Each (deduped) Pythia at its trained and step0 revisions, RedPajama v2's sample, the LLM; GloVe once.
    fetched = sorted(w["artefact"] for r, w in jobs if r == "fetch_hub")
    assert fetched == sorted(
        [
            f"models--EleutherAI--pythia-{size}-deduped@{revision}"
            for size in ("70m", "160m", "410m", "1b", "6.9b")
            for revision in ("main", "step0")
        ]
        + [
            "datasets--EleutherAI--rpj-v2-sample@main",
            "models--hugging-quants--Meta-Llama-3.1-70B-Instruct-AWQ-INT4@main",
        ]
    )
    step0 = re.search(
        r"rule cache_eval:\n\s+input: ([^\n]*)\n(?:.*\n){0,8}?\s+wildcards: model=pythia-70m, variant=step0",
        result.stdout,
    )
    assert step0 and "pythia-70m-deduped@step0.json" in step0[1] and "pythia-70m-deduped@main.json" in step0[1]


def test_a_missing_glove_file_is_fetched_or_stops_the_workflow_before_any_job(tmp_path):
    """A configured GloVe path named like one of glove.6B.zip's files is fetched there; one the zip
    cannot give stops the toy study, naming its key; a user's own file is used as it is."""
    config = yaml.safe_load(MINI.read_text())
    config["toy"]["word_vectors"]["glove"] = {
        "glove-50d": "resources/glove/glove.6B.50d.txt",
        "mine": "vectors/mine.txt",
    }
    path = tmp_path / "glove.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("--dry-run", "--directory", str(tmp_path), "--configfile", str(path), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        "config key 'toy.word_vectors.glove.mine': cannot read the GloVe file vectors/mine.txt: set the config "
        "key toy.word_vectors.glove.mine to a GloVe text file on disk, or to a path ending in one of "
        "glove.6B.zip's files (glove.6B.50d.txt, "
    ) in output
    assert not (tmp_path / "results").exists()
    (tmp_path / "vectors").mkdir()
    (tmp_path / "vectors" / "mine.txt").write_text("the 0.1 0.2\n")
    planned = planned_jobs(snakemake("--dry-run", "--directory", str(tmp_path), "--configfile", str(path)).stdout)
    assert [rule for rule, _ in planned].count("fetch_glove") == 1
    # Section 3 alone fetches nothing of Section 4.
    section3 = snakemake(
        "--dry-run", "--directory", str(tmp_path), "--configfile", str(path), "--", "results/metrics.csv"
    )
    assert "fetch_glove" not in [rule for rule, _ in planned_jobs(section3.stdout)]
    (tmp_path / "resources" / "glove").mkdir(parents=True)
    (tmp_path / "resources" / "glove" / "glove.6B.50d.txt").write_text("the 0.1 0.2\n")
    planned = planned_jobs(snakemake("--dry-run", "--directory", str(tmp_path), "--configfile", str(path)).stdout)
    assert "fetch_glove" not in [rule for rule, _ in planned]


def test_a_bad_config_stops_before_any_job(tmp_path):
    config = yaml.safe_load(MINI.read_text())
    config["variants"] = ["trained", "re-randomised"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("--dry-run", "--configfile", str(bad), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "config key 'variants[1]': 're-randomised' is not one of" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_autointerp_is_optional_and_covers_the_sweep_only_when_asked(tmp_path):
    """Without an `autointerp` section nothing of it is planned; with it but without
    autointerp.sweep, a sweep SAE (whose latents were not collected) has no auto-interp rule."""
    config = yaml.safe_load(MINI.read_text())
    config.pop("autointerp")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("--dry-run", "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"))
    rules = {rule for rule, _ in planned_jobs(result.stdout)}
    assert "finalize_sae" in rules and not rules & {"collect_latents", "autointerp_cpu", "autointerp_figures"}
    assert sum(1 for rule, w in planned_jobs(result.stdout) if rule == "tokenize_text") == 2
    sweep_sae = "results/mini-neox/trained/x2-k4/layers.1/autointerp/tokens"
    config = yaml.safe_load(MINI.read_text())
    config["autointerp"]["sweep"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    refused = snakemake(
        "--dry-run",
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
        "--",
        sweep_sae,
        check=False,
    )
    assert refused.returncode != 0 and "MissingRuleException" in refused.stdout + refused.stderr


def test_end_to_end_mini_study(mini_run):
    mini_run, _ = mini_run
    table = pd.read_csv(mini_run / "results" / "metrics.csv")
    assert len(table) == 5 * 3  # layers 0 and 1 at (4, 4); the sweep adds layer 1 at (2, 4)
    assert set(table["variant"]) == {"trained", "rerandomized_incl_emb", "rerandomized_excl_emb", "step0", "control"}
    assert table["layer"].tolist() == [0, 1, 1] * 5
    assert table["expansion_factor"].tolist() == [4, 2, 4] * 5
    assert (table["num_latents"] == table["expansion_factor"] * 32).all()
    sweep = table[table["layer"] == 1].pivot(index="variant", columns="expansion_factor", values="explained_variance")
    assert (sweep[4] > sweep[2] - 0.05).all()  # twice the latents reconstruct about as well or better
    assert (mini_run / "results" / "figures" / "hyperparameter_sweep.png").stat().st_size > 10_000
    assert table["explained_variance"].between(0.0, 1.0).all()
    assert table["cosine_similarity"].between(0.0, 1.0).all()
    assert (table["l0"] <= 4).all() and (table["l1"] > 0).all()
    assert table["kl_div_score"].notna().all() and (table["kl_with_sae"] >= 0).all()
    assert (table["ce_zero_ablation"] > table["ce_clean"]).loc[table["variant"] == "trained"].all()
    assert table["ce_score_meaningful"].tolist() == (table["variant"] == "trained").tolist()
    assert (mini_run / "results" / "figures" / "sae_metrics.png").stat().st_size > 10_000
    # Every metric with its 95% interval over held-out sequences.
    for metric in (
        "explained_variance",
        "explained_variance_masked_per_token",
        "cosine_similarity",
        "l0",
        "l1",
        "ce_loss_score",
        "kl_div_score",
        "fuzz_auroc_tokens",
        "fuzz_auroc_pooled_tokens",
        "entropy_normalised",
    ):
        assert (table[f"{metric}_low"] <= table[f"{metric}_high"]).all(), metric
    for metric in ("explained_variance", "l1", "kl_with_sae"):
        assert table[metric].between(table[f"{metric}_low"], table[f"{metric}_high"]).all(), metric
        assert (table[f"{metric}_high"] > table[f"{metric}_low"]).all(), metric
    # Every stage wrote its log and benchmark.
    for rule in (
        "tokenize_text",
        "cache_train_shard",
        "cache_eval",
        "train_layer_shard",
        "finalize_sae",
        "evaluate_sae",
        "train_embedded_model",
    ):
        assert list((mini_run / "logs" / rule).rglob("*.log")), rule
        assert list((mini_run / "benchmarks" / rule).rglob("*.tsv")), rule


def test_each_sae_keeps_its_training_curve(mini_run):
    mini_run, _ = mini_run
    sae = mini_run / sae_directory("mini-neox", "step0", 1, 4, 4) / "sae"
    curve = pd.read_csv(sae / "training_curve.csv")
    assert list(curve.columns) == ["batches", "tokens", "fvu", "fired_fraction", "dead_fraction"]
    training = json.loads((sae / "provenance.json").read_text())["training"]
    assert curve["tokens"].is_monotonic_increasing and curve["tokens"].iloc[-1] == training["tokens"]
    assert curve["fvu"].iloc[-1] < curve["fvu"].iloc[0]
    assert curve["fired_fraction"].between(0, 1).all() and curve["dead_fraction"].between(0, 1).all()
    figure = mini_run / "results" / "figures" / "training_curves_mini-neox.png"
    drawn = json.loads(Image.open(figure).text["Description"])
    assert len(drawn["saes"]) == 2 * 5 and not drawn["missing"]  # layers 0 and 1, five variants, at (4, 4)


def test_the_claims_table_compares_trained_with_every_other_variant(mini_run):
    mini_run, _ = mini_run
    claims = pd.read_csv(mini_run / "results" / "claims.csv")
    similar = claims[claims["claim"].str.endswith("similar")]
    # Layers 0 and 1 at the study's (4, 4); four other variants; EV, cosine (masked per token) and fuzzing AUROC.
    assert len(similar) == 2 * 4 * 3
    assert set(similar["metric"]) == {
        "explained_variance_masked_per_token",
        "cosine_similarity_masked",
        "fuzz_auroc_tokens",
    }
    assert set(similar["comparison"]) == {
        f"trained - {v}" for v in ("rerandomized_incl_emb", "rerandomized_excl_emb", "step0", "control")
    }
    assert (similar["low"] <= similar["estimate"]).all() and (similar["estimate"] <= similar["high"]).all()
    assert (similar["holds"] == ((similar["low"] >= -similar["margin"]) & (similar["high"] <= similar["margin"]))).all()
    table = pd.read_csv(mini_run / "results" / "metrics.csv").set_index(["variant", "layer", "expansion_factor"])
    row = similar.set_index(["layer", "metric", "comparison"]).loc[
        ("0", "explained_variance_masked_per_token", "trained - step0")
    ]
    expected = (
        table.loc[("trained", 0, 4), "explained_variance_masked_per_token"]
        - table.loc[("step0", 0, 4), "explained_variance_masked_per_token"]
    )
    assert row["estimate"] == pytest.approx(expected)
    assert set(claims.loc[claims["layer"] == "all", "claim"]) == {
        "control has the highest token entropy",
        "random variants have the lowest token entropy",
        "trained token entropy rises with depth",
        "control worsens with depth",
        "others improve with depth",
        "AUROC falls with depth",
        "re-randomised closer to trained than step0",
        "variant ordering kept across the sweep",  # the sweep's (2, 4) on layer 1
    }
    assert claims["paper_words"].notna().all() and claims["source"].notna().all()
    # Per layer: three random variants x EV, cosine and AUROC; the control's null-explainer AUROC.
    assert len(claims[claims["claim"] == "random closer to trained than the control"]) == 2 * 3 * 3
    assert len(claims[claims["claim"] == "control at chance for the null explainer"]) == 2
    # Section 4 on the superposition sweep (two seeds): one row each at its 32 latents.
    toy = claims[claims["model"] == "superposition"].set_index("claim")
    assert len(toy) == 3 and "1 - NRE" in toy.loc["the gap shrinks after the random MLP", "comparison"]
    # Without a margin a claim holds only where its interval excludes zero.
    unbounded = claims[claims["margin"].isna()]
    assert (~unbounded["holds"] | (unbounded["low"] > 0) | (unbounded["high"] < 0)).all()


def test_the_report_holds_every_figure_and_table_with_its_caption(mini_run, tmp_path):
    mini_run, _ = mini_run
    report = tmp_path / "report.zip"
    snakemake("--directory", str(mini_run), "--configfile", str(MINI), "--report", str(report))
    with zipfile.ZipFile(report) as archive:
        html = archive.read("report/report.html").decode()
        # The latent browser's pages travel inside it (under data/, as Snakemake stores a folder).
        pages = [name for name in archive.namelist() if name.endswith(".html") and "/data/" in name]
    assert any(name.endswith("/index.html") for name in pages), pages
    assert any("/compare_" in name for name in pages) and any("/trained_" in name for name in pages), pages
    assert "latent browser" in html
    entries = [
        "sae_metrics.png",
        "hyperparameter_sweep.png",
        "roc_mini-neox_tokens.png",
        "examples_mini-neox_tokens.csv",
        "appendix_d_mini-neox_tokens.png",
        "training_curves_mini-neox.png",
        "metrics.csv",
        "claims.csv",
        "figure4_lomax.png",
    ]
    for entry in entries:
        assert entry in html, entry
    toy = sorted(p.name for p in (mini_run / "results" / "toy").glob("*/figures/*.png"))
    assert toy and all(name in html for name in toy)
    for caption in (
        "Reproduces <strong>Figure 3</strong>",
        "Reproduces <strong>Figure 11</strong>",
        "Differences from the paper:",
        "The paper's claims as numbers",
        "Appendix D",
    ):
        assert caption in html, caption
    for category in (
        "1. Claims",
        "2. Section 3: SAEs on transformers",
        "3. Section 3.3: auto-interpretability",
        "4. Section 4: toy models",
    ):
        assert category in html, category


def test_artefacts_carry_provenance(mini_run):
    mini_run, _ = mini_run
    variant_dir = mini_run / "results" / "mini-neox" / "rerandomized_excl_emb"
    cache = ActivationCache(variant_dir / "cache" / "eval.zarr")
    assert cache.attrs["variant"] == "rerandomized_excl_emb" and cache.attrs["seed"] == 0
    assert cache.attrs["revision"] == "main" and cache.attrs["layers"] == [0, 1]
    assert cache.attrs["versions"]["eai-sparsify"] == "1.3.3"
    assert cache.attrs["sequences"] == [0, 64]
    sae_record = json.loads((variant_dir / "x2-k4" / "layers.1" / "sae" / "provenance.json").read_text())
    assert sae_record["sae_config"]["k"] == 4 and sae_record["sae_config"]["expansion_factor"] == 2
    assert sae_record["layer"] == 1
    metrics = json.loads((variant_dir / "x4-k4" / "layers.1" / "metrics.json").read_text())
    assert metrics["sae_provenance"]["cache"]["variant"] == "rerandomized_excl_emb"
    # CE/KL on the first 48 held-out sequences (evaluation.ce_sequences), every other metric on all 64.
    assert metrics["ce_sequences"] == 48 and metrics["ce_context_length"] == 32
    assert metrics["metrics"]["n_tokens"] == 64 * 32
    assert len(metrics["bootstrap"]["replicates"]["ce_loss_score"]) == len(
        metrics["bootstrap"]["replicates"]["explained_variance"]
    )
    step0 = ActivationCache(mini_run / "results" / "mini-neox" / "step0" / "cache" / "eval.zarr")
    assert step0.attrs["revision"] == "step0"
    model_record = json.loads(
        (mini_run / "resources" / "models" / "mini-neox" / "step0" / "provenance.json").read_text()
    )
    assert model_record["revision"] == "step0" and model_record["seed"] == 0


def test_shards_are_deleted_and_disk_stays_bounded(mini_run):
    """Shards are deleted once used; of its three, a (model, variant) never holds more than two at once."""
    mini_run, most_shards = mini_run
    assert 1 <= most_shards <= 2
    assert not list(mini_run.glob("results/*/*/cache/train/shard-*.zarr"))
    assert not list(mini_run.glob("results/*/*/layers.*/checkpoints/shard-*"))


def _sae_weights(path: Path) -> dict:
    return load_file(path / "sae.safetensors")


def test_a_finished_run_has_nothing_left_to_do(mini_run):
    """Its three shards let the disk throttle's input set shrink; the profile's rerun triggers keep
    that from retraining anything."""
    mini_run, _ = mini_run
    result = snakemake("--directory", str(mini_run), "--configfile", str(MINI), "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_missing_output_is_rebuilt_by_its_path_alone(mini_run):
    mini_run, _ = mini_run
    target = mini_run / "results" / "mini-neox" / "step0" / "x4-k4" / "layers.0" / "metrics.json"
    before = json.loads(target.read_text())["metrics"]
    target.unlink()
    result = snakemake(
        "--directory", str(mini_run), "--configfile", str(MINI), "--cores", "2", "--", str(target.relative_to(mini_run))
    )
    assert [rule for rule, _ in planned_jobs(result.stdout + result.stderr)] == ["evaluate_sae"]
    assert json.loads(target.read_text())["metrics"] == before


def test_one_stage_reruns_for_every_layer(mini_run):
    """--forcerun STAGE --until STAGE: that stage for every SAE, nothing upstream or downstream."""
    mini_run, _ = mini_run
    result = snakemake(
        "--directory",
        str(mini_run),
        "--configfile",
        str(MINI),
        "--dry-run",
        "--forcerun",
        "evaluate_sae",
        "--until",
        "evaluate_sae",
    )
    jobs = planned_jobs(result.stdout)
    assert {rule for rule, _ in jobs} == {"evaluate_sae"}
    assert sorted((w["variant"], int(w["layer"]), int(w["expansion"])) for _, w in jobs) == sorted(
        (v, layer, e)
        for v in ("trained", "rerandomized_incl_emb", "rerandomized_excl_emb", "step0", "control")
        for layer, e in ((0, 4), (1, 4), (1, 2))
    )


def test_rebuilding_one_layer_reruns_only_that_layer(mini_run):
    """The layer's chain retrains both its SAEs from one read; only the asked-for one is finished
    and evaluated again, and no other layer's chain runs."""
    mini_run, _ = mini_run
    results = mini_run / "results" / "mini-neox"
    target = "results/mini-neox/control/x4-k4/layers.1/metrics.json"
    untouched = [
        results / "control" / "x4-k4" / "layers.0" / "sae" / "sae.safetensors",
        results / "control" / "x2-k4" / "layers.1" / "sae" / "sae.safetensors",
    ]
    before = [path.stat().st_mtime_ns for path in untouched]
    result = snakemake(
        "--directory",
        str(mini_run),
        "--configfile",
        str(MINI),
        "--cores",
        "2",
        "--forcerun",
        "train_layer_shard",
        "--",
        target,
    )
    jobs = planned_jobs(result.stdout + result.stderr)
    # Its shards are re-cached (they were temporary), its layer's chain retrained, nothing else.
    assert sorted(rule for rule, _ in jobs) == sorted(
        ["cache_train_shard"] * 3 + ["evaluate_sae", "finalize_sae"] + ["train_layer_shard"] * 3
    )
    assert {w["layer"] for rule, w in jobs if rule == "train_layer_shard"} == {"1"}
    assert [path.stat().st_mtime_ns for path in untouched] == before


def test_the_workflow_runs_as_a_module_of_a_users_own_snakefile(mini_run, tmp_path):
    """A user's Snakefile that uses this workflow as a module, with its own config, plans exactly
    the jobs the workflow itself plans for rebuilding one layer (README: the workflow as a module)."""
    mini_run, _ = mini_run
    user = tmp_path / "Snakefile"
    user.write_text(
        f'configfile: "{MINI}"\n\n\n'
        f'module saerand:\n    snakefile:\n        "{REPO / "Snakefile"}"\n    config:\n        config\n\n\n'
        "use rule * from saerand\n"
    )
    rebuild = [
        "--dry-run",
        "--forcerun",
        "train_layer_shard",
        "--",
        "results/mini-neox/control/x4-k4/layers.1/metrics.json",
    ]
    as_module = subprocess.run(
        [
            *SNAKEMAKE[:3],
            "--snakefile",
            str(user),
            "--workflow-profile",
            str(REPO / "profiles" / "default"),
            "--profile",
            str(REPO / "profiles" / "local"),
            "--directory",
            str(mini_run),
            *rebuild,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    itself = snakemake("--directory", str(mini_run), "--configfile", str(MINI), *rebuild)
    module_jobs = planned_jobs(as_module.stdout + as_module.stderr)
    assert (
        "train_layer_shard",
        {"model": "mini-neox", "variant": "control", "layer": "1", "shard": "2"},
    ) in module_jobs
    assert sorted(map(str, module_jobs)) == sorted(map(str, planned_jobs(itself.stdout + itself.stderr)))


def test_a_killed_run_resumes_from_its_last_checkpoint(mini_run):
    """SIGKILL the whole run mid-chain; the rerun continues after the last finished shard and
    ends with exactly the SAE an uninterrupted run gives."""
    mini_run, _ = mini_run
    layer_dir = mini_run / "results" / "mini-neox" / "trained" / "x4-k4" / "layers.0"
    reference = _sae_weights(layer_dir / "sae")
    command = [
        *SNAKEMAKE,
        "--directory",
        str(mini_run),
        "--configfile",
        str(MINI),
        "--cores",
        "1",
        "--forcerun",
        "train_layer_shard",
        "--",
        str(layer_dir.relative_to(mini_run) / "sae"),
    ]
    # Kill once the shard-2 training job has started, i.e. after snakemake recorded shard 1 as done.
    started = mini_run / "logs" / "train_layer_shard" / "mini-neox" / "trained" / "layers.0" / "shard-2.log"
    started.unlink()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = mini_run / "results" / "mini-neox" / "trained" / "layers.0" / "checkpoints" / "shard-1"
    deadline = time.monotonic() + 600
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # a node failure: nothing gets to clean up
    assert process.wait() == -signal.SIGKILL and started.exists() and checkpoint.exists()

    snakemake("--directory", str(mini_run), "--configfile", str(MINI), "--unlock")
    result = snakemake(
        "--directory",
        str(mini_run),
        "--configfile",
        str(MINI),
        "--cores",
        "2",
        "--rerun-incomplete",
        "--",
        str(layer_dir.relative_to(mini_run) / "sae"),
    )
    jobs = planned_jobs(result.stdout + result.stderr)
    trained_shards = sorted(int(w["shard"]) for rule, w in jobs if rule == "train_layer_shard")
    assert trained_shards in ([2], [])  # shards 0 and 1 were not redone; 2 unless it had finished
    resumed = _sae_weights(layer_dir / "sae")
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), name


def test_toy_study_runs_as_part_of_the_workflow(mini_run):
    mini_run, _ = mini_run
    toy = mini_run / "results" / "toy"
    superposition = pd.read_csv(toy / "superposition" / "metrics.csv")
    # 2 seeds x 4 kinds x 1 latent count x 2 L1 coefficients; MMCS only where ground truth is known.
    assert len(superposition) == 16 and set(superposition["seed"]) == {0, 1}
    assert superposition["mmcs"].notna().tolist() == (superposition["kind"] == "inputs").tolist()
    embeddings = pd.read_csv(toy / "embeddings-mini-neox" / "metrics.csv")
    assert len(embeddings) == 8 and set(embeddings["n_latents"]) == {2 * 32}  # latent_multiples x d_model
    figures = {path.name for path in (toy / "superposition" / "figures").glob("*.png")}
    assert figures == {
        "mmcs.png",
        "pareto_all.png",
        "pareto_l0.png",
        "pareto_l1.png",
        "pareto_l1_over_sqrt_l2.png",
        "pareto_hoyer.png",
    }
    assert (toy / "figures" / "figure4_lomax.png").stat().st_size > 10_000
    record = json.loads((toy / "superposition" / "seed-1.provenance.json").read_text())
    assert record["seed"] == 1 and record["dataset"]["n_features"] == 32 and "torch" in record["versions"]


@pytest.mark.slow
def test_control_noise_is_fresh_per_store_and_reproducible(tmp_path, mini_snapshot):
    """The control's held-out store and every training shard read different Gaussian inputs; a
    rerun of a shard job writes the same bytes (the noise is derived from the store, not drawn anew)."""
    start_from_built_model(mini_snapshot, tmp_path)
    stores = {
        "eval": "results/mini-neox/control/cache/eval.zarr",
        **{f"shard-{i}": f"results/mini-neox/control/cache/train/shard-{i}.zarr" for i in range(2)},
    }
    snakemake("--directory", str(tmp_path), "--configfile", str(MINI), "--cores", "2", "--", *stores.values())
    caches = {name: ActivationCache(tmp_path / path) for name, path in stores.items()}
    for layer in (0, 1):
        rows = {name: cache.activations(layer)[:] for name, cache in caches.items()}
        for a, b in (("eval", "shard-0"), ("eval", "shard-1"), ("shard-0", "shard-1")):
            n = min(len(rows[a]), len(rows[b]))
            assert not (rows[a][:n] == rows[b][:n]).all(axis=1).any(), (a, b, layer)
    seeds = {name: cache.attrs["control_inputs"]["noise_seed"] for name, cache in caches.items()}
    assert len(set(seeds.values())) == 3
    first = caches["shard-0"].activations(1)[:]
    snakemake(
        "--directory",
        str(tmp_path),
        "--configfile",
        str(MINI),
        "--cores",
        "2",
        "--forcerun",
        "cache_train_shard",
        "--",
        stores["shard-0"],
    )
    again = ActivationCache(tmp_path / stores["shard-0"])
    np.testing.assert_array_equal(again.activations(1)[:], first)
    assert again.attrs["control_inputs"] == caches["shard-0"].attrs["control_inputs"]


@pytest.mark.slow
def test_a_local_run_is_bound_by_no_partition_on_a_machine_with_slurm_caps(tmp_path, mini_snapshot, monkeypatch):
    """Partitions of 1 minute (a login node's sinfo): the shard's caching, estimated longer, would
    stop a Slurm plan; a local run caches it, and never asks sinfo (a Slurm that is down or slow
    to answer does not hold it up)."""
    sinfo = tmp_path / "bin"
    sinfo.mkdir()
    fake_sinfo(sinfo, "cpu*|1:00|8000\ngpu|1:00|8000\n", monkeypatch)
    workdir = tmp_path / "run"
    workdir.mkdir()
    start_from_built_model(mini_snapshot, workdir)
    shard = "results/mini-neox/trained/cache/train/shard-0.zarr"
    planned = snakemake("--directory", str(workdir), "--configfile", str(MINI), "-n", "--", shard, check=False)
    assert planned.returncode != 0 and "CannotFinish: cache_train_shard" in planned.stdout + planned.stderr
    (sinfo / "calls").unlink()
    snakemake("--directory", str(workdir), "--configfile", str(MINI), "--cores", "2", "--", shard)
    assert ActivationCache(workdir / shard).n_tokens == 2048
    assert not (sinfo / "calls").exists()


@pytest.mark.slow
def test_a_scratch_budget_runs_the_chains_one_after_the_other(tmp_path, mini_snapshot):
    """A budget of one (model, variant)'s two shards: the control's first shard waits for the
    trained model's SAEs, and no more than two shards are ever on disk in all."""
    config = yaml.safe_load(MINI.read_text())
    for section in ("toy", "autointerp", "sweep"):
        config.pop(section)
    # Two shards of 2,048 tokens x 2 layers x 32 dims in float32: 1 MiB.
    config.update(variants=["trained", "control"], scratch_budget=2 * 2048 * 2 * 32 * 4)
    path = tmp_path / "budget.yaml"
    # In the mini config's key order: Snakemake compares dict params by their repr, and the built
    # model's records were made with that order.
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "run"
    workdir.mkdir()
    start_from_built_model(mini_snapshot, workdir)
    plan = snakemake(
        "--dry-run",
        "--directory",
        str(workdir),
        "--configfile",
        str(path),
        "--",
        "results/mini-neox/control/cache/train/shard-0.zarr",
    )
    assert not {"train_embedded_model", "tokenize_text"} & {rule for rule, _ in planned_jobs(plan.stdout)}
    control_shard = re.search(
        r"input: (.*)\n\s+output: results/mini-neox/control/cache/train/shard-0.zarr\n", plan.stdout
    )
    assert "results/mini-neox/trained/x4-k4/layers.0/sae" in control_shard.group(1)
    per_chain, in_all = run_watching_shards(workdir, configfile=path)
    assert 1 <= per_chain <= 2 and in_all <= 2
    assert len(pd.read_csv(workdir / "results" / "metrics.csv")) == 2 * 2


def test_the_llm_explainer_runs_as_one_server_group_beside_the_null(mini_snapshot, tiny_llama, tmp_path):
    """The paper's explainer through the workflow: one vLLM service job (the tiny double) and the
    trained variant's 3 SAEs (the sweep's too) in one group on a finished study, beside the null
    explainer's results; the server is stopped when its SAEs are done."""
    workdir = tmp_path / "study"
    shutil.copytree(mini_snapshot, workdir, symlinks=True)
    overlay = write_llm_config(tmp_path / "llm.yaml", tiny_llama, saes_per_server=15)
    # A service and its consumers run at once, in the local profile's 2 cores (the clients ask for none).
    args = ("--directory", str(workdir), "--configfile", str(MINI), str(overlay), "--config", "variants=[trained]")
    counts = Counter(rule for rule, _ in planned_jobs(snakemake(*args, "--dry-run").stdout))
    assert counts["llm_server"] == 1 and counts["autointerp_llm"] == 3 and not counts["train_layer_shard"]
    snakemake(*args)
    server_log = (workdir / "logs" / "llm_server" / "llm-0.log").read_text()
    pid = int(re.search(r"Started server process \[(\d+)\]", server_log).group(1))
    assert not Path(f"/proc/{pid}").exists() and not list((workdir / "results" / "autointerp").glob("servers/*"))
    table = pd.read_csv(workdir / "results" / "metrics.csv")
    assert table["fuzz_auroc_llm"].between(0, 1).all() and len(table) == 3
    assert (table["latents_scored_llm"] == 8).all() and (table["samples_unparsed_llm"] == 0).all()
    assert table["fuzz_auroc_tokens"].between(0, 1).all()  # the null's results beside them
    assert (workdir / "results" / "figures" / "roc_mini-neox_llm.png").stat().st_size > 10_000
    examples = pd.read_csv(workdir / "results" / "autointerp" / "examples_mini-neox_llm.csv")
    assert len(examples) == 5 * 2 and examples["explanation"].notna().all()


def test_autointerp_runs_in_the_workflow(mini_run):
    """Section 3.3 with the token null explainer: latents per (model, variant) in delphi's format,
    scores per SAE of the study (not the sweep's), their columns in the table, ROC curves."""
    mini_run, _ = mini_run
    table = pd.read_csv(mini_run / "results" / "metrics.csv")
    main = table["expansion_factor"] == 4
    for column in ("fuzz_auroc_tokens", "detection_auroc_tokens", "entropy_nats", "entropy_normalised"):
        assert table[column].notna().all(), column  # the sweep's SAEs too (autointerp.sweep)
    assert table.loc[main, "fuzz_auroc_tokens"].between(0, 1).all()
    assert (table.loc[main, "fuzz_auroc_tokens_low"] <= table.loc[main, "fuzz_auroc_tokens"]).all()
    assert (table.loc[main, "latents_scored_tokens"] == 8).all()
    # The control's inputs carry no token identity: the token null explains little of it.
    by_variant = table[main].groupby("variant")["fuzz_auroc_tokens"].mean()
    assert by_variant["control"] < by_variant["trained"]
    for variant in ("trained", "control"):
        latents = mini_run / "results" / "mini-neox" / variant / "autointerp" / "latents" / "delphi"
        # Only delphi's modules, one per SAE: two on layer 1 (the sweep's point too).
        assert sorted(p.name for p in latents.iterdir()) == ["x2-k4.layers.1", "x4-k4.layers.0", "x4-k4.layers.1"]
        selection = json.loads((latents / "x4-k4.layers.1" / "selection.json").read_text())
        assert len(selection["selected"]) == 8
        assert selection["drawn"] == 8 + selection["dead"] + selection["too_rare"]
    assert (mini_run / "results" / "figures" / "roc_mini-neox_tokens.png").stat().st_size > 10_000
    examples = pd.read_csv(mini_run / "results" / "autointerp" / "examples_mini-neox_tokens.csv")
    assert len(examples) == 5 * 2 * 5 and examples["explanation"].str.startswith("tokens: ").all()
    # Appendix D: each listed latent's three most activating examples, strongest first, marked.
    assert examples["top_1"].str.contains(r"<<.+>>\(\d+\.\d\d\)").all()
    assert (examples["top_1_max"] >= examples["top_2_max"]).all() and (
        examples["top_2_max"] >= examples["top_3_max"]
    ).all()
    assert (mini_run / "results" / "figures" / "appendix_d_mini-neox_tokens.png").stat().st_size > 10_000
