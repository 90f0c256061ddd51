# Wildcards, targets and per-model inputs shared by every stage.

import re

from saerand.config import VARIANTS, embedded_model_dir, model_location, sae_targets


wildcard_constraints:
    model="|".join(map(re.escape, config["models"])),
    variant="|".join(VARIANTS),
    layer=r"\d+",
    split="train|eval",


SAE_TARGETS = list(sae_targets(config))


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


wildcard_constraints:
    embedded=re.escape(config.get("embedded_model", {}).get("name", "no-embedded-model")),
