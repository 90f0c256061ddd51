import dataclasses
import shutil
import sys
from dataclasses import replace

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from sparsify import SaeConfig, SparseCoder, TrainConfig, Trainer

from saerand.cache import ActivationCache, write_activation_cache
from saerand.metrics import evaluate_sae
from saerand.sae_training import SaeTrainer, default_lr, geometric_median, save_sae, train_sae, training_batches
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


@pytest.mark.parametrize(
    "optimizer, extra",
    [
        ("signum", {}),
        ("adam", {}),
        ("adam", {"adam_8bit": True}),
        ("adam", {"adam_8bit": True, "grad_acc_steps": 2, "micro_acc_steps": 2, "auxk_alpha": 0.03125}),
    ],
)
def test_matches_sparsify_trainer_bit_for_bit(tmp_path, monkeypatch, cache, tiny_neox, token_ids, optimizer, extra):
    """The cached-activation loop and sparsify's online Trainer give the same weights, with gradient
    accumulation over batches and chunks too (whose schedule sparsify sizes in batches). sparsify
    takes bitsandbytes' 8-bit Adam whenever it is installed: without `adam_8bit` it is hidden."""
    accumulation = {key: value for key, value in extra.items() if key != "adam_8bit"}
    settings = replace(SETTINGS, optimizer=optimizer, lr_warmup_steps=2, dead_feature_threshold=100, **extra)
    if accumulation:
        settings = replace(settings, lr_schedule_length="batches")
    ours, summary = train_sae(cache, 1, settings, context_length=32)
    assert summary["optimizer_steps"] == 6 // settings.grad_acc_steps
    if not settings.adam_8bit:
        # Also its submodule, which an earlier test may have imported: sparsify imports that.
        monkeypatch.setitem(sys.modules, "bitsandbytes", None)
        monkeypatch.setitem(sys.modules, "bitsandbytes.optim", None)

    config = TrainConfig(
        SaeConfig(expansion_factor=4, k=4),
        batch_size=4,
        layers=[1],
        optimizer=optimizer,
        lr_warmup_steps=2,
        dead_feature_threshold=100,
        **accumulation,
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


# The authors' fork (config/presets/authors_sae.yaml) at this test's size: an optimizer step every
# three batches of two sequences, so steps span the shards.
AUTHORS = {
    "batch_size": 2,
    "grad_acc_steps": 3,
    "micro_acc_steps": 2,
    "loop": "authors",
    "grad_clip_norm": 1.0,
    "lr_schedule_length": "batches",
    "decoder_bias_init": "geometric_median",
    "adam_8bit": True,
}


@pytest.mark.parametrize(
    "optimizer, buffer_shuffle, preset",
    [("signum", False, {}), ("adam", False, {}), ("adam", True, {}), ("adam", True, AUTHORS)],
)
def test_training_over_shards_with_checkpoints_equals_one_pass(
    tmp_path, cache, tiny_neox, token_ids, optimizer, buffer_shuffle, preset
):
    """Stop after every shard, reload from disk, continue: the same weights as one pass (with the
    buffer mixed, one pass over the same shards' mixed batches), also where an optimizer step's
    accumulated gradients span two shards."""
    from saerand.sae_training import SaeTrainer, save_layer_checkpoint, training_batches

    settings = replace(_resumed_settings(optimizer, buffer_shuffle=buffer_shuffle), **preset)
    batches = 24 // settings.batch_size
    shards = []
    for index, part in enumerate((token_ids[:8], token_ids[8:16], token_ids[16:])):
        path = tmp_path / f"shard-{index}.zarr"
        write_activation_cache(
            path, SubjectModel(tiny_neox, "trained"), part, [1], batch_sequences=8, dtype="float32", chunk_rows=100
        )
        shards.append(ActivationCache(path))
    if buffer_shuffle:
        uninterrupted = SaeTrainer(cache.d_model, settings, num_steps=batches)
        for index, shard in enumerate(shards):
            uninterrupted.train_on(training_batches(shard, 1, settings, 32, shard=index))
        whole, _ = uninterrupted.finish()
    else:
        whole, _ = train_sae(cache, 1, settings, context_length=32)
    checkpoint = None
    for index, shard in enumerate(shards):
        trainer = (
            SaeTrainer(shard.d_model, settings, num_steps=batches)
            if checkpoint is None
            else SaeTrainer.from_checkpoint(checkpoint / "x4-k4", settings)
        )
        trainer.train_on(training_batches(shard, 1, settings, 32, shard=index))
        checkpoint = tmp_path / f"checkpoint-{index}"
        save_layer_checkpoint(checkpoint, {"x4-k4": trainer}, {"shard": index})
    resumed, summary = SaeTrainer.from_checkpoint(checkpoint / "x4-k4", settings).finish()
    assert summary["steps"] == batches and summary["tokens"] == 24 * 32
    assert summary["optimizer_steps"] == batches // settings.grad_acc_steps
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
    from saerand.sae_training import SaeTrainer, save_layer_checkpoint, train_layer_shard
    from saerand.study import SaeHyperparameters

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


def test_geometric_median_resists_an_outlier_where_the_mean_does_not():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [100.0, 0.0]])
    torch.testing.assert_close(geometric_median(points), torch.tensor([2.0, 0.0]), atol=1e-3, rtol=0)
    assert points.mean(0)[0] == pytest.approx(21.2)
    # An equilateral triangle's is its centre, where the iteration starts: it stays there.
    triangle = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0**0.5]])
    torch.testing.assert_close(geometric_median(triangle), triangle.mean(0))


def _recorded_grad_norms(trainer: SaeTrainer) -> list[float]:
    """The gradient norm the optimizer steps with, at every step."""
    norms = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        norms.append(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in trainer.sae.parameters()])).item())
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    return norms


def test_authors_loop_clips_each_batch_before_the_projection_and_decays_little(cache):
    """The authors' fork: the summed gradient clipped after every batch, then the decoder-parallel
    part removed (so a step's norm ends below the clip), b_dec at the geometric median, 8-bit Adam,
    the decay sized in batches (6 batches, 3 steps, 1 warm-up step: 3/5 of the peak at the end);
    sparsify's loop clips last (the norm is the clip) and decays to 0 over its optimizer steps."""
    from bitsandbytes.optim import Adam8bit

    clip = 1e-3  # below every raw gradient norm here
    preset = replace(
        SETTINGS, **(AUTHORS | {"batch_size": 4, "grad_acc_steps": 2}), optimizer="adam", lr_warmup_steps=1
    )
    authors = SaeTrainer(cache.d_model, replace(preset, grad_clip_norm=clip), num_steps=6)
    sparsify = SaeTrainer(
        cache.d_model,
        replace(SETTINGS, optimizer="adam", lr_warmup_steps=1, grad_acc_steps=2, grad_clip_norm=clip),
        num_steps=6,
    )
    assert isinstance(authors.optimizer, Adam8bit) and isinstance(sparsify.optimizer, torch.optim.Adam)
    norms = {name: _recorded_grad_norms(trainer) for name, trainer in (("authors", authors), ("sparsify", sparsify))}
    for trainer in (authors, sparsify):
        trainer.train_on(training_batches(cache, 1, preset, 32))
    assert len(norms["authors"]) == len(norms["sparsify"]) == 3
    assert all(norm < clip * 0.999 for norm in norms["authors"])
    assert norms["sparsify"] == pytest.approx([clip] * 3, rel=1e-4)
    assert authors.schedule.get_last_lr()[0] == pytest.approx(authors.lr * 3 / 5)
    assert sparsify.schedule.get_last_lr()[0] == 0.0
    assert authors.optimizer.state[authors.sae.encoder.weight]["state1"].dtype == torch.uint8
    assert len(authors.fvu_trace) == 12  # two chunks a batch


def test_geometric_median_decoder_bias_starts_at_the_first_batchs_median(cache):
    settings = replace(SETTINGS, decoder_bias_init="geometric_median")
    trainer = SaeTrainer(cache.d_model, settings, num_steps=6)
    first = next(training_batches(cache, 1, settings, 32))
    trainer.optimizer.step = lambda *args, **kwargs: None  # the bias as initialised, before any update
    trainer.step_on(first)
    torch.testing.assert_close(trainer.sae.b_dec.detach(), geometric_median(first))
    assert not torch.allclose(trainer.sae.b_dec.detach(), first.mean(0), atol=1e-3)


def test_8bit_adam_refuses_what_it_cannot_be():
    with pytest.raises(ValueError, match="sae.adam_8bit and sae.fused_adam exclude each other"):
        SaeTrainer(8, replace(SETTINGS, optimizer="adam", adam_8bit=True, fused_adam=True), num_steps=1)
    with pytest.raises(ValueError, match="sae.adam_8bit applies to optimizer adam, not signum"):
        SaeTrainer(8, replace(SETTINGS, adam_8bit=True), num_steps=1)


def test_the_training_curve_is_recorded_saved_and_resumed(tmp_path, tiny_neox, token_ids):
    """A point every batch here (6 batches, under CURVE_POINTS): the chunks' mean FVU since the
    previous point, the share of latents fired since it, the share dead; over two shards with a
    checkpoint between, the same curve as one pass; saved beside the SAE."""
    from saerand.paths import CURVE_FILE
    from saerand.sae_training import save_layer_checkpoint

    settings = replace(_resumed_settings("adam", buffer_shuffle=False), micro_acc_steps=2, dead_feature_threshold=200)
    shards = _shards(tmp_path, tiny_neox, token_ids)
    whole = SaeTrainer(shards[0].d_model, settings, num_steps=6)
    for index, shard in enumerate(shards):
        whole.train_on(training_batches(shard, 1, settings, 32, shard=index))
    first = SaeTrainer(shards[0].d_model, settings, num_steps=6)
    first.train_on(training_batches(shards[0], 1, settings, 32, shard=0))
    save_layer_checkpoint(tmp_path / "checkpoint", {"x4-k4": first}, {"shard": 0})
    resumed = SaeTrainer.from_checkpoint(tmp_path / "checkpoint" / "x4-k4", settings)
    resumed.train_on(training_batches(shards[1], 1, settings, 32, shard=1))
    curve = whole.curve
    assert resumed.curve == curve
    assert [point["batches"] for point in curve] == [1, 2, 3, 4, 5, 6]
    assert [point["tokens"] for point in curve] == [128 * n for n in range(1, 7)]
    assert curve[0]["fvu"] == pytest.approx(sum(whole.fvu_trace[:2]) / 2)  # two chunks a batch
    assert all(0 < point["fired_fraction"] <= 1 for point in curve)
    # AuxK's count: nothing is dead before 200 tokens without firing (batches of 128).
    assert curve[0]["dead_fraction"] == 0 and curve[-1]["dead_fraction"] > 0
    sae, _ = whole.finish()
    save_sae(sae, tmp_path / "sae", {"seed": 0}, curve=curve)
    saved = (tmp_path / "sae" / CURVE_FILE).read_text().splitlines()
    assert saved[0] == "batches,tokens,fvu,fired_fraction,dead_fraction" and len(saved) == 7


def test_the_last_checkpoint_holds_the_finished_sae_and_finalizing_it_needs_no_torch(tmp_path, tiny_neox, token_ids):
    """After the last shard each SAE's checkpoint holds it finished: publishing it gives the files that
    finishing it from its training state gives (a checkpoint from before they held it), bit for bit,
    and imports neither torch nor sparsify."""
    import json
    import subprocess

    from saerand.finished_sae import FINISHED, finalize_sae
    from saerand.paths import CURVE_FILE
    from saerand.sae_training import save_layer_checkpoint, train_layer_shard
    from saerand.study import SaeHyperparameters

    settings = _resumed_settings("adam", buffer_shuffle=False)
    point = SaeHyperparameters(4, 4)
    shards = _shards(tmp_path, tiny_neox, token_ids)
    previous = None
    for index, shard in enumerate(shards):
        trainers = train_layer_shard(shard, 1, index, settings, [point], 32, 24 * 32, previous=previous)
        previous = tmp_path / f"shard-{index}"
        save_layer_checkpoint(previous, trainers, {"shard": index})
    assert not (tmp_path / "shard-0" / point.label / FINISHED).exists()
    checkpoint = previous / point.label
    fields = {"model": "m", "variant": "v", "layer": 1}
    sae_settings = dataclasses.asdict(replace(settings, expansion_factor=4, k=4))
    script = (
        "import sys, json; from saerand.finished_sae import finalize_sae; "
        f"s = finalize_sae({str(checkpoint)!r}, {str(tmp_path / 'published')!r}, {fields!r}, {sae_settings!r}); "
        "print(json.dumps(s), 'torch' in sys.modules, 'sparsify' in sys.modules)"
    )
    published = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    summary, torch_imported, sparsify_imported = published.stdout.rsplit(maxsplit=2)
    assert (torch_imported, sparsify_imported) == ("False", "False")
    shutil.rmtree(checkpoint / FINISHED)  # as a last checkpoint written before they held it
    fallback = finalize_sae(checkpoint, tmp_path / "fallback", fields, sae_settings)
    assert json.loads(summary) == fallback and fallback["steps"] == 6
    for name in ("sae.safetensors", "cfg.json", CURVE_FILE):
        assert (tmp_path / "published" / name).read_bytes() == (tmp_path / "fallback" / name).read_bytes(), name
    record = json.loads((tmp_path / "published" / "provenance.json").read_text())
    assert record["model"] == "m" and record["training"] == fallback and "versions" in record
