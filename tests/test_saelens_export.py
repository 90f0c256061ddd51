"""saerand.saelens_export: sparsify TopK SAEs in SAELens's format, loaded back by SAELens itself (in
.venv-saelens, scripts/setup.sh --saelens) on TransformerLens's view of the same residual stream."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file
from sparsify import SparseCoder, SparseCoderConfig

from saerand.cache import residual_stream
from saerand.saelens_export import SAELENS_VERSION, NotExportableError, export_saelens
from saerand.variants import SubjectModel

from .conftest import REPO

SAELENS_PYTHON = REPO / ".venv-saelens" / "bin" / "python"
SAE_PROVENANCE = {"model": "tiny-neox", "variant": "trained", "layer": 2}

# Run in .venv-saelens: TransformerLens's HookedTransformer of the saved GPT-NeoX (TransformerLens's
# own config and weight conversion, from the local folder), its activations at the export's hook,
# and SAELens's encoding and reconstruction of them and of the batch saerand cached.
SAELENS_SIDE = """
import json, sys
import torch, sae_lens, transformer_lens
from safetensors.torch import load_file, save_file
from sae_lens import SAE
from transformers import GPTNeoXForCausalLM
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.loading_from_pretrained import convert_hf_model_config
from transformer_lens.pretrained.weight_conversions.neox import convert_neox_weights

export, model_dir, batch, out = sys.argv[1:]
hf = GPTNeoXForCausalLM.from_pretrained(model_dir).eval()
config = HookedTransformerConfig(**{**convert_hf_model_config(model_dir), "tokenizer_name": None})
lens = HookedTransformer(config)
lens.load_and_process_state_dict(
    convert_neox_weights(hf, config), fold_ln=False, center_writing_weights=False, center_unembed=False
)
sae = SAE.load_from_disk(export)
inputs = load_file(batch)
with torch.no_grad():
    _, cache = lens.run_with_cache(inputs["input_ids"], names_filter=sae.cfg.metadata.hook_name)
    stream = cache[sae.cfg.metadata.hook_name].reshape(-1, sae.cfg.d_in)
    codes = sae.encode(inputs["x"])
    save_file(
        {"stream": stream, "codes": codes, "reconstruction": sae.decode(codes),
         "stream_reconstruction": sae(stream)},
        out,
    )
print(json.dumps({"sae_lens": sae_lens.__version__, "class": type(sae).__name__, "k": sae.cfg.k}))
"""


def _sparsify_sae(directory, d_in: int = 64, cfg: SparseCoderConfig | None = None) -> SparseCoder:
    """A SparseCoder with random weights, saved in sparsify's format; biases non-zero, so that
    subtracting b_dec before encoding (or not) shows."""
    torch.manual_seed(0)
    sae = SparseCoder(d_in, cfg or SparseCoderConfig(expansion_factor=4, k=8), "cpu", dtype=torch.float32)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.encoder.bias.normal_(0.0, 0.1)
    sae.save_to_disk(directory)
    return sae


def _export(sae_dir, destination, sae_provenance=SAE_PROVENANCE):
    return export_saelens(
        sae_dir, destination, sae_provenance, model_name="EleutherAI/pythia-70m-deduped", context_size=32
    )


def test_the_export_has_saelens_config_fields_weight_names_and_shapes(tmp_path):
    sae = _sparsify_sae(tmp_path / "sae")
    cfg = _export(tmp_path / "sae", tmp_path / "saelens")

    assert sorted(path.name for path in (tmp_path / "saelens").iterdir()) == [
        "cfg.json",
        "provenance.json",
        "sae_weights.safetensors",
    ]
    assert json.loads((tmp_path / "saelens" / "cfg.json").read_text()) == cfg
    assert {key: cfg[key] for key in cfg if key != "metadata"} == {
        "architecture": "topk",
        "d_in": 64,
        "d_sae": 256,
        "k": 8,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "reshape_activations": "none",
    }
    metadata = cfg["metadata"]
    assert metadata["hook_name"] == "blocks.2.hook_resid_post"
    assert metadata["model_name"] == "EleutherAI/pythia-70m-deduped"
    assert metadata["sae_lens_version"] == SAELENS_VERSION
    assert (metadata["context_size"], metadata["prepend_bos"]) == (32, False)
    assert metadata["saerand"] == SAE_PROVENANCE

    weights = load_file(tmp_path / "saelens" / "sae_weights.safetensors")
    assert {name: tuple(tensor.shape) for name, tensor in weights.items()} == {
        "W_enc": (64, 256),
        "b_enc": (256,),
        "W_dec": (256, 64),
        "b_dec": (64,),
    }
    torch.testing.assert_close(weights["W_enc"], sae.encoder.weight.detach().T, rtol=0, atol=0)
    torch.testing.assert_close(weights["b_enc"], sae.encoder.bias.detach(), rtol=0, atol=0)
    torch.testing.assert_close(weights["W_dec"], sae.W_dec.detach(), rtol=0, atol=0)
    torch.testing.assert_close(weights["b_dec"], sae.b_dec.detach(), rtol=0, atol=0)

    record = json.loads((tmp_path / "saelens" / "provenance.json").read_text())
    assert record["sae"] == SAE_PROVENANCE and record["source"] == str(tmp_path / "sae")
    assert record["saelens_cfg"] == cfg and "versions" in record and "created_utc" in record


@pytest.mark.parametrize(
    ("make", "sae_provenance", "message"),
    [
        (lambda path: path.mkdir(parents=True), SAE_PROVENANCE, "is not a sparsify SAE: it has no cfg.json"),
        (
            lambda path: _sparsify_sae(path, cfg=SparseCoderConfig(activation="groupmax", expansion_factor=4, k=8)),
            SAE_PROVENANCE,
            "its activation is not TopK",
        ),
        (
            lambda path: _sparsify_sae(path, cfg=SparseCoderConfig(transcode=True, expansion_factor=4, k=8)),
            SAE_PROVENANCE,
            "it is a transcoder",
        ),
        (
            lambda path: _sparsify_sae(path, cfg=SparseCoderConfig(skip_connection=True, expansion_factor=4, k=8)),
            SAE_PROVENANCE,
            "it has a skip connection",
        ),
        (_sparsify_sae, {"model": "tiny-neox", "variant": "trained"}, "has no layer"),
    ],
    ids=["no-cfg", "groupmax", "transcoder", "skip-connection", "no-layer"],
)
def test_what_saelens_topk_sae_cannot_hold_is_named_and_nothing_is_written(tmp_path, make, sae_provenance, message):
    make(tmp_path / "in" / "sae")
    with pytest.raises(NotExportableError, match=message):
        _export(tmp_path / "in" / "sae", tmp_path / "out" / "saelens", sae_provenance)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    not SAELENS_PYTHON.exists(), reason="needs SAELens in .venv-saelens: bash scripts/setup.sh --saelens"
)
def test_saelens_loads_the_export_and_reconstructs_what_sparsify_does(tmp_path, tiny_neox, token_ids):
    """SAELens (its own loader, in its own venv) gives sparsify's codes and reconstructions of the
    residual stream saerand caches for the last layer, and the hook the export names is where
    TransformerLens sees that very stream (transformers' last hidden state, after the final
    LayerNorm, is not it)."""
    layer = SAE_PROVENANCE["layer"]
    assert layer == tiny_neox.config.num_hidden_layers - 1
    input_ids = torch.from_numpy(token_ids[:8]).long()
    stream = residual_stream(SubjectModel(tiny_neox, "trained"), input_ids, [layer])[layer].reshape(-1, 64)
    sae = _sparsify_sae(tmp_path / "sae")
    with torch.no_grad():
        top = sae.encode(stream)
        reconstruction = sae.decode(top.top_acts, top.top_indices)
        codes = torch.zeros(len(stream), sae.num_latents).scatter_(1, top.top_indices, top.top_acts)
    tiny_neox.save_pretrained(tmp_path / "model")
    _export(tmp_path / "sae", tmp_path / "saelens")
    save_file({"input_ids": input_ids, "x": stream}, tmp_path / "batch.safetensors")

    ran = subprocess.run(
        [SAELENS_PYTHON, "-c", SAELENS_SIDE, tmp_path / "saelens", tmp_path / "model", tmp_path / "batch.safetensors"]
        + [tmp_path / "out.safetensors"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout.splitlines()[-1]) == {"sae_lens": SAELENS_VERSION, "class": "TopKSAE", "k": 8}
    out = load_file(tmp_path / "out.safetensors")

    assert (codes > 0).sum(1).float().mean() > 4  # the codes compared are not mostly zeros
    torch.testing.assert_close(out["codes"], codes)
    torch.testing.assert_close(out["reconstruction"], reconstruction)
    relative = ((out["reconstruction"] - reconstruction).norm(dim=1) / reconstruction.norm(dim=1)).max()
    assert relative < 1e-6
    # TransformerLens orders the float32 operations of a block its own way.
    torch.testing.assert_close(out["stream"], stream, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["stream_reconstruction"], reconstruction, rtol=1e-5, atol=1e-5)
    print(
        f"SAELens vs sparsify: reconstruction max abs error {(out['reconstruction'] - reconstruction).abs().max():.3g}, "
        f"max relative (per token, L2) {relative:.3g}; TransformerLens hook vs saerand's cache: max abs "
        f"{(out['stream'] - stream).abs().max():.3g}"
    )
