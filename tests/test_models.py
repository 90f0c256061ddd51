import pytest
import torch

from saerand.models import _source, load_causal_lm, load_tokenizer
from saerand.variants import load_variant


def test_a_location_that_is_neither_a_directory_nor_a_hub_id_is_named(tmp_path):
    """(Hub ids resolve to their fetched copy: tests/test_fetch.py.)"""
    with pytest.raises(FileNotFoundError, match="'/nowhere/model' is neither a directory nor a hub id"):
        _source("/nowhere/model", "main")


def test_local_revisions_load_like_hub_revisions(local_model, tiny_neox):
    model = load_causal_lm(str(local_model), "step0", n_layers=3)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for a, b in zip(model.parameters(), tiny_neox.parameters()):
        assert torch.equal(a, b)
    assert load_tokenizer(str(local_model), "main").eos_token == "<|endoftext|>"


def test_missing_revision_and_wrong_depth_are_named(local_model):
    with pytest.raises(FileNotFoundError, match="no revision 'step1000'"):
        load_causal_lm(str(local_model), "step1000", n_layers=3)
    with pytest.raises(ValueError, match="has 3 layers but the config says n_layers = 6"):
        load_causal_lm(str(local_model), "main", n_layers=6)


def test_load_variant_records_how_it_was_made(local_model):
    settings = {"n_layers": 3, "dtype": "float32", "revision": "main", "step0_revision": "step0"}
    subject, record = load_variant(
        str(local_model), settings, "rerandomized_excl_emb", seed=5, device="cpu", split="train", shard=2
    )
    # 40 parameter tensors (12 per block, final LayerNorm, embedding, unembedding); 2 kept.
    assert record == {"variant": "rerandomized_excl_emb", "revision": "main", "seed": 5, "resampled_parameters": 40 - 2}
    subject, record = load_variant(str(local_model), settings, "step0", seed=5, device="cpu", split="eval")
    assert record["revision"] == "step0" and subject.variant == "step0"


def test_control_noise_differs_per_store_and_is_recorded(local_model):
    """Every training shard and the held-out set get their own noise; the same store, the same noise."""
    settings = {"n_layers": 3, "dtype": "float32", "revision": "main", "step0_revision": "step0"}
    ids = torch.zeros(2, 8, dtype=torch.long)
    stores = [("eval", 0), ("train", 0), ("train", 1), ("train", 2)]
    noise, records = {}, {}
    for split, shard in stores:
        subject, records[split, shard] = load_variant(
            str(local_model), settings, "control", seed=5, device="cpu", split=split, shard=shard
        )
        noise[split, shard] = subject.model_inputs(ids)["inputs_embeds"]
    for i, a in enumerate(stores):
        for b in stores[i + 1 :]:
            assert not torch.isclose(noise[a], noise[b]).any(), (a, b)
    again, record = load_variant(str(local_model), settings, "control", seed=5, device="cpu", split="train", shard=1)
    assert torch.equal(again.model_inputs(ids)["inputs_embeds"], noise["train", 1])
    assert record == records["train", 1]
    assert record["control_inputs"]["split"] == "train" and record["control_inputs"]["shard"] == 1
    assert "SeedSequence" in record["control_inputs"]["derivation"]
    assert len({r["control_inputs"]["noise_seed"] for r in records.values()}) == len(stores)


def test_auto_dtype_is_bfloat16_on_a_gpu_and_float32_on_a_cpu(local_model):
    from saerand.config import SCHEMA, load_config
    from saerand.models import resolve_dtype

    from .conftest import REPO

    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and resolve_dtype("auto", "cuda:1") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("float16", "cuda") == torch.float16
    assert load_causal_lm(str(local_model), "main", n_layers=3, dtype="auto").dtype == torch.float32
    paper = load_config(REPO / "config" / "config.yaml", SCHEMA)
    assert {model["dtype"] for model in paper["models"].values()} == {"auto"}
