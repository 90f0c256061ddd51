# Wildcards, targets and per-model inputs shared by every stage.

import re
from pathlib import Path

from saerand.config import CORPUS_DIR, VARIANTS, embedded_model_dir, model_location, sae_targets, train_shards


wildcard_constraints:
    model="|".join(map(re.escape, config["models"])),
    variant="|".join(VARIANTS),
    layer=r"\d+",
    split="train|eval",
    shard=r"\d+",
    embedded=re.escape(config.get("embedded_model", {}).get("name", "no-embedded-model")),


SAE_TARGETS = list(sae_targets(config))
TRAIN_SHARDS = train_shards(config)


def model_files(wildcards):
    """The embedded model is built by the workflow; hub models are fetched by the job itself."""
    if config["models"][wildcards.model].get("embedded"):
        return str(embedded_model_dir(wildcards.model))
    return []


def model_settings(wildcards):
    return {
        "location": model_location(wildcards.model, config["models"][wildcards.model]),
        **config["models"][wildcards.model],
    }


def cached_layers(wildcards):
    return [layer for model, variant, layer in SAE_TARGETS if (model, variant) == (wildcards.model, wildcards.variant)]


def text_inputs(wildcards):
    """Corpus files the workflow writes itself (the embedded default) are inputs of tokenization."""
    data_files = config["datasets"][wildcards.split].get("data_files") or ""
    return data_files if data_files.startswith(f"{CORPUS_DIR}/") else []


def layer_dir(wildcards, layer=None):
    layer = wildcards.layer if layer is None else layer
    return f"results/{wildcards.model}/{wildcards.variant}/layers.{layer}"


def checkpoint_path(wildcards, shard, layer=None):
    return f"{layer_dir(wildcards, layer)}/checkpoints/shard-{shard}"


def shard_lookahead(wildcards):
    """Shard s waits until every layer still being trained has finished shard s - 2.

    Layers whose SAE already exists are not waited for, so rebuilding one layer never asks for the
    other layers' (deleted) checkpoints and never retrains them.
    """
    shard = int(wildcards.shard)
    if shard < 2:
        return []
    return [
        checkpoint_path(wildcards, shard - 2, layer)
        for layer in cached_layers(wildcards)
        if not Path(layer_dir(wildcards, layer), "sae").exists()
    ]


def previous_checkpoint(wildcards):
    shard = int(wildcards.shard)
    return checkpoint_path(wildcards, shard - 1) if shard > 0 else []


def last_checkpoint(wildcards):
    return checkpoint_path(wildcards, len(TRAIN_SHARDS) - 1)
