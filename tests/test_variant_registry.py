"""The variant registry: every variant complete and consistent before any job, and each entry doing
what it says when the variant loads."""

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from matplotlib.colors import is_color_like

from saerand.config import SCHEMA, ConfigError, load_schema, validate_config
from saerand.variant_registry import LEARNED, RESAMPLED, VARIANTS, Variant, label, registered_variant
from saerand.variants import EMBEDDING_PARAMETERS, load_variant

MODEL_SETTINGS = {"n_layers": 3, "dtype": "float32", "revision": "main", "step0_revision": "step0"}


@pytest.fixture(scope="module")
def demo() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "demo.yaml").read_text())


def test_the_papers_five_variants_in_the_figures_order():
    assert list(VARIANTS) == ["trained", "rerandomized_excl_emb", "control", "step0", "rerandomized_incl_emb"]
    assert LEARNED == ("trained", "control")
    assert RESAMPLED == ("rerandomized_excl_emb", "rerandomized_incl_emb")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_has_every_entry(name):
    variant = VARIANTS[name]
    assert variant.name == name
    assert is_color_like(variant.colour), variant.colour
    assert label(name) == variant.label and variant.label
    assert variant.random_weights == (name not in LEARNED)
    # No two variants look alike in a figure.
    others = [v for v in VARIANTS.values() if v.name != name]
    assert variant.label not in {v.label for v in others} and variant.colour not in {v.colour for v in others}


def test_the_schema_lists_the_registry(demo):
    assert load_schema(SCHEMA)["$defs"]["variant"]["enum"] == list(VARIANTS)
    every = copy.deepcopy(demo)
    every["variants"] = list(VARIANTS)
    assert validate_config(every, SCHEMA)["variants"] == list(VARIANTS)


def test_an_unregistered_variant_stops_the_config_and_the_lookup(demo):
    bad = copy.deepcopy(demo)
    bad["variants"] = ["trained", "rerandomized_attention"]
    with pytest.raises(ConfigError, match="'rerandomized_attention' is not one of"):
        validate_config(bad, SCHEMA)
    # A name that merely starts like a registered one is not taken for it.
    with pytest.raises(KeyError, match="'rerandomized_attention' is not a variant; registered: trained, "):
        registered_variant("rerandomized_attention")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"resampling": "attention"}, "resampling must be one of"),
        ({"revision": "step1000"}, "revision must be one of"),
        ({"inputs": "images"}, "inputs must be one of"),
        ({"random_weights": False, "resampling": "all"}, "random_weights=False contradicts its weights"),
        ({"random_weights": True}, "random_weights=True contradicts its weights"),
        ({"label": ""}, "label and colour must be set"),
    ],
)
def test_an_inconsistent_entry_is_refused_at_import(change, message):
    trained = dataclasses.asdict(VARIANTS["trained"])
    with pytest.raises(ValueError, match=message):
        Variant(**{**trained, "name": "new", **change})


def _same(a: torch.nn.Module, b: torch.nn.Module, names) -> list[bool]:
    own, other = dict(a.named_parameters()), dict(b.named_parameters())
    return [torch.equal(own[name], other[name]) for name in names]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_loads_as_its_entry_says(name, local_model, tiny_neox):
    """Weights kept or re-sampled, embeddings kept or not, token ids or Gaussian vectors in, each as
    the registry states (local_model holds the same weights at both revisions)."""
    spec = VARIANTS[name]
    subject, record = load_variant(str(local_model), MODEL_SETTINGS, name, seed=3, device="cpu", split="train")
    assert record["revision"] == MODEL_SETTINGS[spec.revision]
    # Matrices only: a constant tensor (a fresh LayerNorm's ones) re-samples to itself.
    names = [n for n, p in tiny_neox.named_parameters() if p.ndim == 2]
    embeddings = [n for n in names if n in EMBEDDING_PARAMETERS]
    blocks = [n for n in names if n not in EMBEDDING_PARAMETERS]
    assert len(embeddings) == 2 and blocks
    kept_blocks = _same(subject.model, tiny_neox, blocks)
    kept_embeddings = _same(subject.model, tiny_neox, embeddings)
    if spec.resampling == "none":
        assert all(kept_blocks) and all(kept_embeddings) and "resampled_parameters" not in record
    else:
        assert not any(kept_blocks)
        assert all(kept_embeddings) == (spec.resampling == "excl_embeddings")
    inputs = subject.model_inputs(torch.zeros(2, 5, dtype=torch.long))
    if spec.inputs == "gaussian_noise":
        assert set(inputs) == {"inputs_embeds"} and inputs["inputs_embeds"].shape == (2, 5, 64)
        assert "control_inputs" in record
    else:
        assert set(inputs) == {"input_ids"} and "control_inputs" not in record
