from collections import Counter

import pytest

from saerand.config import SCHEMA, load_config
from saerand.costs import StudyCosts
from saerand.device_rates import ASSUMED_GPU
from saerand.fetch.artefacts import HubArtefact
from saerand.planner import download_estimate, format_plan, main, plan

from .conftest import REPO


def test_jobs_per_rule_are_snakemakes_and_local_rules_are_no_cluster_jobs(paper, paper_jobs):
    study = plan(paper, jobs=paper_jobs)
    assert {name: rule.jobs for name, rule in study.rules.items()} == Counter(job.rule for job in paper_jobs)
    assert study.rules["train_layer_shard"].jobs == 2300 and "all" not in study.rules
    # Slurm groups: 250 shard jobs, finish batches of 12 SAEs (160M: 96 per variant -> 8), a server
    # and its 10 SAEs, the null explainer's 650 jobs one (model, variant) per job, the rest alone;
    # the fetches, aggregations and plots on the login node.
    toy, autointerp = 10 + 9, 25 + 25 + 65
    assert study.cluster_jobs == 250 + 5 * (1 + 8 + 1 + 1 + 1) + 15 + 25 + toy + autointerp == 484
    assert plan(paper, finish_batch=1, jobs=paper_jobs).cluster_jobs == 250 + 650 + 15 + 25 + toy + autointerp


def test_the_plan_follows_the_workflow_when_the_config_changes(paper):
    """No sweep, no auto-interp, no toy study: the dry run drops their jobs, the plan their hours."""
    config = {key: value for key, value in paper.items() if key not in ("sweep", "autointerp", "toy")}
    study = plan(config)
    assert study.rules["finalize_sae"].jobs == 230 and study.rules["train_layer_shard"].jobs == 2300
    assert not {"autointerp_llm", "collect_latents", "toy_sweep", "plot_hyperparameter_sweep"} & set(study.rules)
    # No auto-interp split to tokenize: 2 token stores per model, not 3.
    assert study.cluster_jobs == 250 + 5 * (1 + 1 + 1 + 1 + 1) + 10 + 25


def test_gpu_hours_and_disk(paper, paper_jobs):
    study = plan(paper, jobs=paper_jobs)
    assert study.rules["tokenize_text"].gpu_hours is None  # CPU rule
    assert study.rules["train_layer_shard"].gpu_hours > study.rules["cache_train_shard"].gpu_hours > 0
    # Two 10M-token shards per (model, variant) at most, fp16, every cached layer.
    layers = {
        "pythia-70m": (6, 512),
        "pythia-160m": (12, 768),
        "pythia-410m": (12, 1024),
        "pythia-1b": (8, 2048),
        "pythia-6.9b": (8, 4096),
    }
    expected = sum(5 * 2 * 10_010_624 * n * d * 2 for n, d in layers.values())
    assert study.disk["training activations (temporary)"] == expected
    assert study.largest_sae.model == "pythia-6.9b" and study.layer_step_gpu_bytes < 80e9


def test_downloads_and_their_disk(paper, paper_jobs, tmp_path):
    """Pythia in float16 at each revision (6.9B: about 14 GB each), the 70B AWQ LLM (about 37 GiB),
    GloVe's 822 MiB zip, unzipped to its four files; an embedded study fetches nothing."""
    study = plan(paper, jobs=paper_jobs)
    downloads = study.downloads
    six_9b = "models--EleutherAI--pythia-6.9b-deduped"
    assert downloads[f"{six_9b}@main"][0] == downloads[f"{six_9b}@step0"][0]
    assert 13e9 < downloads[f"{six_9b}@main"][0] < 14.5e9
    assert downloads["models--hugging-quants--Meta-Llama-3.1-70B-Instruct-AWQ-INT4@main"][0] / 2**30 == pytest.approx(
        37, abs=0.5
    )
    assert downloads["glove.6B.zip"] == (862_182_613, pytest.approx(2.25e9, rel=0.01))
    assert study.disk["downloads (hf_home, GloVe)"] == sum(on_disk for _, on_disk in downloads.values())
    assert 105e9 < study.disk["downloads (hf_home, GloVe)"] < 115e9  # RedPajama v2's sample about 35 GB of it
    assert "fetched on the login node (snakemake prefetch)" in format_plan(study)
    demo = plan(load_config(REPO / "config" / "demo.yaml", SCHEMA))
    assert demo.downloads == {} and "fetch_hub" not in demo.rules


def test_llm_gpu_hours_count_every_prompt_token_of_the_papers_settings(paper, paper_jobs):
    """100 latents per SAE (650: the sweep's too): an explanation prompt of 40 examples of 32 tokens,
    and per scorer 150 samples in prompts of 5; 2 FLOPs per parameter and token of a 70.6B model
    at 200 TFLOP/s. With vLLM's prefix cache (the default) the prompts' fixed parts (640 tokens of
    the explainer's, 670 of each scorer prompt's) are computed once per server, not per prompt."""
    study = plan(paper, jobs=paper_jobs)
    explain = 40 * 32 * 2.5
    score = 30 * (5 * 32 * 1.25)
    answers = (1 + 60) * 60
    tokens = {"on": explain + 2 * score + answers, "off": explain + 640 + 2 * (score + 30 * 670) + answers}
    assert tokens == pytest.approx({"on": 3_200 + 2 * 6_000 + 3_660, "off": 3_840 + 2 * 26_100 + 3_660})
    hours = {cache: 650 * 100 * n * 2 * 70.6e9 / 200e12 / 3600 for cache, n in tokens.items()}
    assert study.rules["autointerp_llm"].gpu_hours == pytest.approx(hours["on"]) and 200 < hours["on"] < 300
    assert study.llm_gpu_hours == pytest.approx({"prefix cache on": hours["on"], "prefix cache off": hours["off"]})
    assert 700 < hours["off"] < 800
    assert "LLM GPU-hours: 240.41 with the prefix cache on, 761.01 with the prefix cache off" in format_plan(study)


def test_benchmark_files_calibrate_throughput(paper, paper_jobs, tmp_path):
    """A finished 70M shard that took 5 times what the device model said scales the rule's hours by 5."""
    assumed = plan(paper, jobs=paper_jobs, rates=ASSUMED_GPU)
    bench = tmp_path / "benchmarks" / "train_layer_shard" / "pythia-70m" / "trained" / "layers.0"
    bench.mkdir(parents=True)
    costs = StudyCosts(paper, rates=ASSUMED_GPU)
    predicted = costs.job_seconds("train_layer_shard", costs.train_layer_shard("pythia-70m", 0, 0))
    (bench / "shard-0.tsv").write_text(f"s\th:m:s\tmax_rss\n{5 * predicted:.3f}\t0:0:1\t100\n")
    measured = plan(paper, tmp_path / "benchmarks", rates=ASSUMED_GPU, jobs=paper_jobs)
    rule = measured.rules["train_layer_shard"]
    assert rule.calibrated_from == 1 and rule.measured_scale == pytest.approx(5, rel=1e-3)
    assert rule.gpu_hours == pytest.approx(assumed.rules["train_layer_shard"].gpu_hours * 5, rel=1e-3)
    assert measured.rules["cache_eval"].calibrated_from == 0
    assert "the device model x 5 (measured, 1 benchmark files)" in format_plan(measured)
    assert "device model: NVIDIA H100 (assumed), rates from assumed" in format_plan(measured)


def test_command_prints_the_plan(capsys, tmp_path, paper_jobs, monkeypatch):
    monkeypatch.setattr("saerand.planner.study_jobs", lambda config: paper_jobs)
    main(["--configfile", str(REPO / "config" / "config.yaml"), "--benchmarks", str(tmp_path)])
    out = capsys.readouterr().out
    assert "train_layer_shard" in out and "2300" in out and "cluster jobs (Slurm groups)" in out
    assert "training activations (temporary)" in out and "TB" in out
    assert (
        out.strip() == format_plan(plan(load_config(REPO / "config" / "config.yaml", SCHEMA), jobs=paper_jobs)).strip()
    )


def test_a_scratch_budget_bounds_the_activations_and_lengthens_training(paper, paper_jobs):
    free = plan(paper, jobs=paper_jobs)
    budget = plan({**paper, "scratch_budget": 5 * 10**12}, jobs=paper_jobs)
    six_point_nine = 2 * 10_010_624 * 8 * 4096 * 2
    assert budget.disk["training activations (temporary)"] == 3 * six_point_nine <= 5 * 10**12
    assert free.disk["training activations (temporary)"] > 14e12
    # Three lanes of 25 chains: several chains one after another in each lane.
    assert budget.lanes == 3 and free.lanes is None
    assert budget.training_hours_in_budget > 3 * free.training_hours > 0
    assert free.training_hours_in_budget == pytest.approx(free.training_hours)
    assert "3 of 25 (model, variant) chains train at once" in format_plan(budget)


def test_node_local_shards_leave_the_shared_filesystem_and_need_one_shard_on_each_gpu_node(paper, paper_jobs):
    """With cache.node_local_dir the training activations (over 14 TB on the shared filesystem) move
    to the GPU nodes: each shard group's job holds its own shard there, at most a 6.9B one (10M
    tokens, 8 layers, 4096 wide, float16: 656 GB)."""
    shared = plan(paper, jobs=paper_jobs)
    local = plan({**paper, "cache": {**paper["cache"], "node_local_dir": "/local/scratch"}}, jobs=paper_jobs)
    assert "training activations (temporary)" not in local.disk
    assert local.disk == {
        stage: size for stage, size in shared.disk.items() if stage != "training activations (temporary)"
    }
    assert shared.node_local_bytes is None
    assert local.node_local_bytes == 10_010_624 * 8 * 4096 * 2
    assert "node-local, each GPU job (its shard)" in format_plan(local)
    assert "node-local" not in format_plan(shared)


def test_a_pythia_checkpoint_is_estimated_from_its_shapes_in_float16():
    """Pythia-70M: about 70M parameters with embeddings, 2 bytes each, at every revision; a hub dataset
    without download_bytes counts nothing."""
    pythia = {"hub_id": "EleutherAI/pythia-70m", "n_layers": 6, "d_model": 512}
    config = {"models": {"pythia": pythia}, "datasets": {"train": {"path": "org/corpus"}}, "autointerp": {}}
    for revision in ("main", "step0"):
        assert download_estimate(config, HubArtefact("EleutherAI/pythia-70m", revision)) == pytest.approx(
            1.4e8, rel=0.1
        )
    assert download_estimate(config, HubArtefact("org/corpus", "main", "dataset")) == 0.0
