from dataclasses import replace

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from sparsify import SaeConfig, SparseCoder, TrainConfig, Trainer

from saerand.cache import ActivationCache, write_activation_cache
from saerand.metrics import evaluate_sae
from saerand.sae_training import SaeTrainer, default_lr, save_sae, train_sae, training_batches
from saerand.settings import SaeSettings, section_settings
from saerand.variants import SubjectModel

# Stored order: sparsify's Trainer reads its dataset in order, which the parity tests need.
SETTINGS = section_settings(
    SaeSettings, "sae", expansion_factor=4, k=4, batch_size=4, optimizer="signum", buffer_shuffle=False, device="cpu"
)


def _resumed_settings(optimizer: str, buffer_shuffle: bool) -> SaeSettings:
    """Settings that exercise every piece of state a checkpoint carries: warm-up, AuxK's dead-latent
    counters, a mixed buffer of small windows."""
    return replace(
        SETTINGS,
        optimizer=optimizer,
        lr_warmup_steps=2,
        auxk_alpha=0.03125,
        dead_feature_threshold=100,
        buffer_shuffle=buffer_shuffle,
        buffer_window_chunks=2,
        buffer_block_rows=4,
    )


@pytest.fixture()
def cache(tmp_path, tiny_neox, token_ids) -> ActivationCache:
    path = tmp_path / "train.zarr"
    write_activation_cache(
        path, SubjectModel(tiny_neox, "trained"), token_ids, [1], batch_sequences=8, dtype="float32", chunk_rows=100
    )
    return ActivationCache(path)


def test_training_reduces_fvu_and_keeps_decoder_rows_unit_norm(cache):
    sae, summary = train_sae(cache, 1, SETTINGS, context_length=32)
    assert summary["steps"] == 6 and summary["tokens"] == 24 * 32
    assert summary["lr"] == pytest.approx(5e-3 / (256 / 2**14) ** 0.5)  # sparsify's lr scaling
    assert summary["final_train_fvu"] < summary["first_train_fvu"]
    norms = sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=0.05)


@pytest.mark.parametrize("optimizer", ["signum", "adam"])
def test_matches_sparsify_trainer_bit_for_bit(tmp_path, cache, tiny_neox, token_ids, optimizer):
    """The cached-activation loop and sparsify's online Trainer give the same weights."""
    settings = replace(SETTINGS, optimizer=optimizer, lr_warmup_steps=2)
    ours, _ = train_sae(cache, 1, settings, context_length=32)

    config = TrainConfig(
        SaeConfig(expansion_factor=4, k=4),
        batch_size=4,
        layers=[1],
        optimizer=optimizer,
        lr_warmup_steps=2,
        save_dir=str(tmp_path / "sparsify"),
        run_name="run",
        log_to_wandb=False,
    )
    dataset = Dataset.from_dict({"input_ids": token_ids.tolist()}).with_format("torch")
    Trainer(config, dataset, tiny_neox).fit()
    theirs = load_file(tmp_path / "sparsify" / "run" / "layers.1" / "sae.safetensors")
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(tensor, theirs[name], rtol=0, atol=0, msg=name)


def test_saved_sae_loads_unchanged_in_sparsify_and_delphi(tmp_path, cache):
    from delphi.sparse_coders.load_sparsify import load_sparsify_sparse_coders

    sae, _ = train_sae(cache, 1, SETTINGS, context_length=32)
    layer_dir = tmp_path / "layers.1"
    save_sae(sae, layer_dir / "sae", {"seed": 0})
    assert sorted(p.name for p in (layer_dir / "sae").iterdir()) == ["cfg.json", "provenance.json", "sae.safetensors"]

    x = next(cache.batches(1, 50))
    reference = sae.encode(x)
    by_sparsify = SparseCoder.load_from_disk(layer_dir / "sae")
    by_delphi = load_sparsify_sparse_coders(str(layer_dir), ["sae"], device="cpu")["sae"]
    for loaded in (by_sparsify, by_delphi):
        assert loaded.cfg.k == 4 and loaded.num_latents == 256
        encoded = loaded.encode(x)
        torch.testing.assert_close(encoded.top_acts, reference.top_acts, rtol=0, atol=0)
        torch.testing.assert_close(encoded.top_indices, reference.top_indices, rtol=0, atol=0)

    metrics, _ = evaluate_sae(by_sparsify, cache, 1, batch_rows=100, special_token_ids=[0])
    assert 0.0 < metrics["explained_variance"] < 1.0
    assert metrics["l0"] <= 4 and metrics["n_tokens"] == 24 * 32


def test_default_learning_rates_scale_with_latents():
    assert default_lr("signum", 2**14) == pytest.approx(5e-3)
    assert default_lr("adam", 4 * 2**14) == pytest.approx(1e-4)


@pytest.mark.parametrize("optimizer, buffer_shuffle", [("signum", False), ("adam", False), ("adam", True)])
def test_training_over_shards_with_checkpoints_equals_one_pass(
    tmp_path, cache, tiny_neox, token_ids, optimizer, buffer_shuffle
):
    """Stop after every shard, reload from disk, continue: the same weights as one pass (with the
    buffer mixed, one pass over the same shards' mixed batches)."""
    from saerand.sae_training import SaeTrainer, save_layer_checkpoint, training_batches

    settings = _resumed_settings(optimizer, buffer_shuffle=buffer_shuffle)
    shards = []
    for index, part in enumerate((token_ids[:8], token_ids[8:16], token_ids[16:])):
        path = tmp_path / f"shard-{index}.zarr"
        write_activation_cache(
            path, SubjectModel(tiny_neox, "trained"), part, [1], batch_sequences=8, dtype="float32", chunk_rows=100
        )
        shards.append(ActivationCache(path))
    if buffer_shuffle:
        uninterrupted = SaeTrainer(cache.d_model, settings, num_steps=6)
        for index, shard in enumerate(shards):
            uninterrupted.train_on(training_batches(shard, 1, settings, 32, shard=index))
        whole, _ = uninterrupted.finish()
    else:
        whole, _ = train_sae(cache, 1, settings, context_length=32)
    checkpoint = None
    for index, shard in enumerate(shards):
        trainer = (
            SaeTrainer(shard.d_model, settings, num_steps=6)
            if checkpoint is None
            else SaeTrainer.from_checkpoint(checkpoint / "x4-k4", settings)
        )
        trainer.train_on(training_batches(shard, 1, settings, 32, shard=index))
        checkpoint = tmp_path / f"checkpoint-{index}"
        save_layer_checkpoint(checkpoint, {"x4-k4": trainer}, {"shard": index})
    resumed, summary = SaeTrainer.from_checkpoint(checkpoint / "x4-k4", settings).finish()
    assert summary["steps"] == 6 and summary["tokens"] == 24 * 32
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_mixed_buffer_changes_the_batches_but_not_their_content(cache):
    from saerand.sae_training import buffer_order_seed, training_batches

    mixed = replace(SETTINGS, buffer_shuffle=True, buffer_window_chunks=4, buffer_block_rows=1)
    stored = torch.cat(list(training_batches(cache, 1, SETTINGS, 32)))
    shuffled = torch.cat(list(training_batches(cache, 1, mixed, 32, shard=3)))
    assert not torch.equal(stored, shuffled)
    torch.testing.assert_close(shuffled.sum(0), stored.sum(0), rtol=1e-5, atol=1e-4)
    assert buffer_order_seed(SETTINGS, 3) is None
    assert buffer_order_seed(mixed, 3) == buffer_order_seed(mixed, 3) != buffer_order_seed(mixed, 4)


def _shards(tmp_path, tiny_neox, token_ids, layers=(1,)):
    shards = []
    for index, part in enumerate((token_ids[:12], token_ids[12:])):
        path = tmp_path / f"shard-{index}.zarr"
        write_activation_cache(
            path,
            SubjectModel(tiny_neox, "trained"),
            part,
            list(layers),
            batch_sequences=8,
            dtype="float32",
            chunk_rows=100,
        )
        shards.append(ActivationCache(path))
    return shards


@pytest.mark.parametrize("optimizer", ["signum", "adam"])
def test_a_layers_saes_trained_together_equal_each_trained_alone(tmp_path, tiny_neox, token_ids, optimizer):
    """The sweep points of a layer train from one read of each batch, over checkpointed shards,
    and each ends bit for bit where training it alone ends; their checkpoints stay separate."""
    from saerand.config import SaeHyperparameters
    from saerand.sae_training import SaeTrainer, save_layer_checkpoint, train_layer_shard

    settings = _resumed_settings(optimizer, buffer_shuffle=True)
    points = [SaeHyperparameters(2, 4), SaeHyperparameters(4, 4), SaeHyperparameters(4, 8)]
    shards = _shards(tmp_path, tiny_neox, token_ids)

    def chain(selected, name):
        previous = None
        for index, shard in enumerate(shards):
            trainers = train_layer_shard(shard, 1, index, settings, selected, 32, 24 * 32, previous=previous)
            previous = tmp_path / name / f"shard-{index}"
            save_layer_checkpoint(previous, trainers, {"shard": index})
        return previous

    together = chain(points, "together")
    assert sorted(p.name for p in together.iterdir()) == ["x2-k4", "x4-k4", "x4-k8"]
    for point in points:
        alone = chain([point], f"alone-{point.label}")
        ours, summary = SaeTrainer.from_checkpoint(
            together / point.label, replace(settings, k=point.k, expansion_factor=point.expansion_factor)
        ).finish()
        theirs, _ = SaeTrainer.from_checkpoint(
            alone / point.label, replace(settings, k=point.k, expansion_factor=point.expansion_factor)
        ).finish()
        assert (
            summary["steps"] == 6
            and ours.num_latents == shards[0].d_model * point.expansion_factor
            and ours.cfg.k == point.k
        )
        for name, tensor in theirs.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[name], tensor, rtol=0, atol=0, msg=f"{point.label} {name}")
    # Together means one read: the batches are the same for every point.
    with pytest.raises(
        FileNotFoundError,
        match=r"holds no training state of SAE x8-k4.*--forcerun train_layer_shard -- results/m/v/x8-k4/layers\.1/sae",
    ):
        train_layer_shard(
            shards[1],
            1,
            1,
            settings,
            [SaeHyperparameters(8, 4)],
            32,
            24 * 32,
            previous=tmp_path / "together" / "shard-0",
            chain=("m", "v"),
        )


def test_fused_adam_is_one_kernel_and_trains_to_the_same_fvu(cache):
    """sae.fused_adam runs torch's fused Adam (the default is its per-tensor loop); the rounding
    differs, the training does not: the same FVU at every step to within 1e-4."""
    default, fused = (
        SaeTrainer(cache.d_model, replace(SETTINGS, optimizer="adam", lr_warmup_steps=2, fused_adam=flag), num_steps=6)
        for flag in (False, True)
    )
    assert not default.optimizer.defaults["fused"] and fused.optimizer.defaults["fused"]
    for trainer in (default, fused):
        trainer.train_on(training_batches(cache, 1, SETTINGS, 32))
    assert len(fused.fvu_trace) == 6 and fused.fvu_trace == pytest.approx(default.fvu_trace, abs=1e-4)
