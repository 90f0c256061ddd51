import copy

import pytest

from saerand.config import ConfigError
from saerand.costs import (
    CPU_CORE_FLOPS,
    JobCost,
    ModelSize,
    StudyCosts,
    estimated_mb,
    sae_train_gpu_bytes,
)
from saerand.device_rates import ASSUMED_GPU
from saerand.settings import study_settings
from saerand.study import SaeTarget


@pytest.mark.parametrize(("model", "published"), [("pythia-160m", 162_322_944), ("pythia-6.9b", 6_857_302_016)])
def test_parameter_counts_match_pythia(paper, model, published):
    assert ModelSize.of(study_settings(paper).models[model]).params() == pytest.approx(published, rel=0.01)


def test_first_limits_come_from_the_estimate(paper):
    costs = StudyCosts(paper, rates=ASSUMED_GPU)
    # 1 PFLOP at 50 TFLOP/s is 20 s, times the margin of 3, plus 2 minutes of start-up: 3 minutes.
    assert costs.estimated_minutes("evaluate_sae", JobCost(1e15, 0, startup_minutes=2)) == pytest.approx(3.0)
    # A CPU rule's at one core's rate.
    cpu = costs.estimated_minutes("toy_sweep", JobCost(1e15, 0, startup_minutes=2))
    assert cpu == pytest.approx(3 * 1e15 / CPU_CORE_FLOPS / 60 + 2)
    assert estimated_mb(JobCost(0, 2**30)) == 1024


def test_training_time_is_steps_flops_and_bytes(paper):
    """A shard of one 70M SAE (d 512, 32,768 latents) on 10,010,624 tokens in steps of 16,384: 611
    steps; the encoder's 2 d n FLOPs per token; per step 40 bytes per weight and 20 per decoder
    weight, and 8 bytes per token and latent of pre-activations; a top-k over every latent."""
    costs = StudyCosts(paper, rates=ASSUMED_GPU)
    cost = costs.train_layer_shard("pythia-70m", 0, 0)
    tokens, latents, steps = 10_010_624, 512 * 64, 10_010_624 / 16_384
    assert cost.steps == pytest.approx(steps)
    assert cost.flops == 2 * 512 * latents * tokens
    weights = 2 * 512 * latents + latents + 512
    assert cost.memory_bytes == pytest.approx(steps * (40 * weights + 20 * 512 * latents) + 8 * latents * tokens)
    assert cost.topk_elements == latents * tokens
    expected = steps * 1e-3 + cost.flops / 50e12 + cost.memory_bytes / 2.5e12 + cost.topk_elements / 1e11
    assert costs.job_seconds("train_layer_shard", cost) == pytest.approx(expected)
    # At 70M the steps' fixed cost, bytes and top-k are over a fifth of the time; at 6.9B under a fifth.
    assert cost.flops / 50e12 < 0.8 * expected
    large = costs.train_layer_shard("pythia-6.9b", 0, 0)
    assert large.flops / 50e12 > 0.8 * costs.job_seconds("train_layer_shard", large)


def test_the_authors_trajectory_pays_per_pass_and_per_optimizer_step(paper):
    """config/presets/authors_sae.yaml: batches of 4 sequences in two chunks, an optimizer step every
    8 batches, 8-bit Adam: twice the passes of 16,384-token batches, an eighth of their optimizer
    steps' bytes, and half the optimizer state (2 bytes of moments per weight for 8)."""
    authors = copy.deepcopy(paper)
    authors["sae"] |= {"batch_size": 4, "grad_acc_steps": 8, "micro_acc_steps": 2, "adam_8bit": True}
    ours, theirs = (
        StudyCosts(config, rates=ASSUMED_GPU).train_layer_shard("pythia-70m", 0, 0) for config in (paper, authors)
    )
    tokens, latents = 10_010_624, 512 * 64
    weights = 2 * 512 * latents + latents + 512
    assert theirs.steps == pytest.approx(tokens / 4096) and theirs.steps == pytest.approx(4 * ours.steps)
    step_bytes = 40 * weights + 20 * 512 * latents
    assert theirs.memory_bytes == pytest.approx(tokens / 65_536 * step_bytes + 8 * latents * tokens)
    assert theirs.flops == ours.flops
    assert theirs.disk_bytes == 6 * weights and ours.disk_bytes == 12 * weights


def test_caching_takes_its_forward_pass_or_its_writes_whichever_is_longer(paper):
    costs = StudyCosts(paper, rates=ASSUMED_GPU)
    cost = costs.cache_train_shard("pythia-70m", 0)
    assert cost.half_precision  # the paper's models run in 16 bits ("auto")
    written = 10_010_624 * 6 * 512 * 2
    assert costs.job_seconds("cache_train_shard", cost) == pytest.approx(max(cost.flops / 400e12, written / 1e9))
    assert written / 1e9 > cost.flops / 400e12  # a 70M model writes slower than it computes


def test_bigger_models_and_saes_get_bigger_limits(paper):
    costs = StudyCosts(paper)
    small = SaeTarget("pythia-70m", "trained", 0, 64, 32)
    large = SaeTarget("pythia-6.9b", "trained", 0, 64, 32)
    assert (
        costs.train_layer_shard(large.model, 0, 0).flops > 60 * costs.train_layer_shard(small.model, 0, 0).flops
    )  # (4096/512)^2
    # A 160M layer trains its eight sweep points together: 16 + 32 + 64 + 128 latents per dimension, twice.
    assert costs.train_layer_shard("pythia-160m", 3, 0).flops == 10_010_624 * 2 * 768 * 768 * 2 * 240
    assert (
        costs.cache_eval("pythia-6.9b").host_memory_bytes
        > 10 * 2**30
        > costs.cache_eval("pythia-70m").host_memory_bytes
    )
    # The 10M-token shard of 6 layers of Pythia-70M in fp16.
    assert costs.cache_train_shard("pythia-70m", 0).disk_bytes == 10_010_624 * 6 * 512 * 2


def test_the_largest_sae_step_fits_an_80gb_card(paper):
    batch_tokens = paper["sae"]["batch_size"] * paper["tokens"]["context_length"]
    step = sae_train_gpu_bytes(4096, 64, "adam", batch_tokens)
    assert 30e9 < step < 80e9
    # Pre-activations of 16,384 tokens x 262,144 latents and their gradient dominate: halve the batch,
    # save about 17 GB.
    assert step - sae_train_gpu_bytes(4096, 64, "adam", batch_tokens // 2) == pytest.approx(17.2e9, rel=0.01)


def test_a_scratch_budget_orders_the_chains_in_lanes(paper):
    """Two 10M-token shards of 8 layers of Pythia-6.9B in fp16 are 1.31 TB: 5 TB holds three chains."""
    costs = StudyCosts({**paper, "scratch_budget": 5 * 10**12})
    assert costs.chain_scratch_bytes("pythia-6.9b") == 2 * 10_010_624 * 8 * 4096 * 2
    assert costs.lanes == 3 and len(costs.study.chains) == 25
    assert costs.chain_before(*costs.study.chains[2]) is None
    assert costs.chain_before(*costs.study.chains[3]) == costs.study.chains[0]
    assert StudyCosts(paper).lanes is None and StudyCosts(paper).chain_before(*costs.study.chains[24]) is None
    with pytest.raises(ConfigError, match="config key 'scratch_budget': 1000000000000 bytes is less than"):
        StudyCosts({**paper, "scratch_budget": 10**12})


def test_an_llm_servers_batch_of_saes_fits_in_the_gpu_partitions_time_limit(paper):
    """Without vLLM's prefix cache the paper's 10 SAEs per server take about 35 h of a 70B model's
    time on one GPU: with a 24 h limit each server gets as many as fit (its clients resume latent by
    latent, so at least one). With it (the default) 10 fit in 24 h, and a 3 h limit leaves 2."""
    no_prefix_cache = copy.deepcopy(paper)
    no_prefix_cache["autointerp"]["llm"]["prefix_caching"] = False
    unlimited = StudyCosts(no_prefix_cache)
    assert unlimited.saes_per_server == paper["autointerp"]["llm"]["saes_per_server"] == 10
    capped = StudyCosts(no_prefix_cache, gpu_runtime_cap=1440)
    assert capped.saes_per_server == 6
    job = capped.job_cost("autointerp_llm", {})
    assert (
        capped.estimated_minutes("autointerp_llm", job)
        <= 1440
        < unlimited.estimated_minutes("autointerp_llm", unlimited.job_cost("autointerp_llm", {}))
    )
    assert StudyCosts(paper, gpu_runtime_cap=1440).saes_per_server == 10
    assert StudyCosts(paper, gpu_runtime_cap=180).saes_per_server == 2
    assert StudyCosts(paper, gpu_runtime_cap=30).saes_per_server == 1
