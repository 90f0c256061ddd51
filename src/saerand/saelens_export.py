"""Each SAE in SAELens's format (sae_lens >= 6 loads it with `SAE.load_from_disk(folder)`), written
with torch and safetensors alone: the workflow never imports sae_lens.

sparsify 1.3.3's TopK SAE encodes topk(relu(encoder(x - b_dec))) and decodes acts @ W_dec + b_dec.
SAELens's `topk` architecture computes the same with W_enc = encoder.weight.T (d_in x d_sae), b_enc =
encoder.bias, W_dec (d_sae x d_in) and b_dec as they are, and apply_b_dec_to_input, which subtracts
b_dec before encoding as sparsify does. It takes the top k before the ReLU: the same code (the k
largest positive pre-activations, zeros elsewhere), as with `sae.topk_before_relu` (saerand.topk_encoder).
SAELens's own sparsify loader (sae_lens 6.54) is not used: it transposes W_dec, so a sparsify 1.3.3
SAE fails to load, and it sets apply_b_dec_to_input to `not normalize_decoder`, false for sparsify's
defaults, which would skip the subtraction of b_dec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_directory, write_json
from .provenance import provenance

# The SAELens release whose format is written: requirements-saelens.txt pins it and the round-trip
# test loads the export with it. SAELens reads a config without a version >= 6 as its older format.
SAELENS_VERSION = "6.54.12"
SAELENS_CONFIG, SAELENS_WEIGHTS = "cfg.json", "sae_weights.safetensors"
SPARSIFY_CONFIG, SPARSIFY_WEIGHTS = "cfg.json", "sae.safetensors"
PROVENANCE = "provenance.json"


class NotExportableError(ValueError):
    """A directory that is not a sparsify TopK SAE that SAELens's `topk` architecture can hold."""


def hook_name(layer: int) -> str:
    """TransformerLens's name of what this project caches as `layer`: the output of GPT-NeoX block
    `layer`, a forward hook on gpt_neox.layers[layer] (saerand.cache.residual_stream), which is the
    residual stream after that block, blocks.{layer}.hook_resid_post. (transformers' hidden_states
    are numbered from the embeddings, and its last one comes after the final LayerNorm.)"""
    return f"blocks.{layer}.hook_resid_post"


def read_sparsify(sae_dir: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A sparsify SAE's config and weights, after checking SAELens's `topk` SAE can hold it."""
    sae_dir = Path(sae_dir)
    for name in (SPARSIFY_CONFIG, SPARSIFY_WEIGHTS):
        if not (sae_dir / name).is_file():
            raise NotExportableError(f"{sae_dir} is not a sparsify SAE: it has no {name}")
    cfg = json.loads((sae_dir / SPARSIFY_CONFIG).read_text())
    unsupported = {
        "activation": (cfg.get("activation", "topk") != "topk", "its activation is not TopK"),
        "transcode": (cfg.get("transcode", False), "it is a transcoder, not an autoencoder"),
        "skip_connection": (cfg.get("skip_connection", False), "it has a skip connection (W_skip)"),
    }
    for key, (found, why) in unsupported.items():
        if found:
            raise NotExportableError(f"{sae_dir} cannot be exported to SAELens's topk SAE: {why} ({key}: {cfg[key]!r})")
    weights = load_file(sae_dir / SPARSIFY_WEIGHTS)
    expected = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
    if set(weights) != expected:
        raise NotExportableError(
            f"{sae_dir / SPARSIFY_WEIGHTS} holds {sorted(weights)}, not a TopK SAE's {sorted(expected)}"
        )
    d_sae, d_in = weights["encoder.weight"].shape
    shapes = {"encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    wrong = {name: tuple(weights[name].shape) for name, shape in shapes.items() if weights[name].shape != shape}
    if wrong or cfg.get("d_in") != d_in or not 0 < cfg.get("k", 0) <= d_sae:
        raise NotExportableError(
            f"{sae_dir}: weights and cfg.json disagree (encoder {d_sae} x {d_in}, cfg d_in {cfg.get('d_in')}, "
            f"k {cfg.get('k')}; wrong shapes: {wrong})"
        )
    return cfg, weights


def saelens_config(
    sparsify_cfg: dict[str, Any],
    weights: dict[str, torch.Tensor],
    *,
    model_name: str,
    layer: int,
    context_size: int,
    extra_metadata: dict[str, Any],
) -> dict[str, Any]:
    """SAELens's cfg.json of a sparsify TopK SAE (TopKSAEConfig.to_dict's fields)."""
    d_sae, d_in = weights["encoder.weight"].shape
    return {
        "architecture": "topk",
        "d_in": d_in,
        "d_sae": d_sae,
        "k": sparsify_cfg["k"],
        "dtype": str(weights["encoder.weight"].dtype).removeprefix("torch."),
        "device": "cpu",
        # sparsify encodes x - b_dec (SparseCoder.encode).
        "apply_b_dec_to_input": True,
        # sparsify trains on raw activations and leaves the decoder's norms as trained.
        "normalize_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": None,  # trained by saerand with sparsify, not by SAELens
            "model_name": model_name,
            "hook_name": hook_name(layer),
            "hook_head_index": None,
            # Sequences are cut from one stream of documents joined with EOS: none starts with a BOS.
            "prepend_bos": False,
            "context_size": context_size,
            "neuronpedia_id": None,
            **extra_metadata,
        },
    }


def export_saelens(
    sae_dir: str | Path,
    destination: str | Path,
    sae_provenance: dict[str, Any],
    *,
    model_name: str,
    context_size: int,
) -> dict[str, Any]:
    """Write the SAE in `sae_dir` (sparsify's format) to `destination` in SAELens's format, with a
    provenance.json that holds the SAE's own (`sae_provenance`: its model, variant and layer, whose
    residual stream is its hook); published at once, and nothing is written for an SAE that cannot
    be exported. Returns SAELens's config."""
    missing = [key for key in ("model", "variant", "layer") if key not in sae_provenance]
    if missing:
        raise NotExportableError(f"the provenance of {sae_dir} has no {', '.join(missing)}")
    sparsify_cfg, weights = read_sparsify(sae_dir)
    layer = int(sae_provenance["layer"])
    # The variant's weights are not those `model_name` loads, except for `trained`: it is named.
    saerand = {key: sae_provenance[key] for key in ("model", "variant", "layer")}
    cfg = saelens_config(
        sparsify_cfg,
        weights,
        model_name=model_name,
        layer=layer,
        context_size=context_size,
        extra_metadata={"saerand": saerand},
    )
    state = {
        "W_enc": weights["encoder.weight"].T.contiguous(),
        "b_enc": weights["encoder.bias"],
        "W_dec": weights["W_dec"],
        "b_dec": weights["b_dec"],
    }
    with atomic_directory(destination) as staging:
        save_file(state, staging / SAELENS_WEIGHTS)
        write_json(staging / SAELENS_CONFIG, cfg)
        write_json(
            staging / PROVENANCE,
            provenance(source=str(sae_dir), sparsify_cfg=sparsify_cfg, sae=sae_provenance, saelens_cfg=cfg),
        )
    return cfg
