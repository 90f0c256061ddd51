"""Where the study's files live, stated once: every path template under results/ (Snakemake's
{wildcards} in them), and the functions that fill the per-SAE ones. The rules (workflow/rules), the
scripts and the package take their paths from here; a target's own paths come from its SaeTarget
(saerand.study).

Directory names carry what defines their contents: an SAE's hyperparameters (x64-k32), so sweep
points never collide; a layer's checkpoints per shard, one subdirectory per SAE trained on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# What the embedded default builds for itself (workflow/rules/embedded_model.smk).
EMBEDDED_MODELS_DIR = Path("resources/models")
CORPUS_DIR = Path("resources/corpus")

# Per model: its tokenized text, one store per split (train, eval, autointerp).
TOKENS = "results/{model}/tokens/{split}.zarr"
# Per (model, variant): the held-out activations, the training activations shard by shard
# (temporary, read only by the training in its own shard group), and the latents auto-interp samples.
EVAL_CACHE = "results/{model}/{variant}/cache/eval.zarr"
TRAIN_SHARD = "results/{model}/{variant}/cache/train/shard-{shard}.zarr"
LATENTS = "results/{model}/{variant}/autointerp/latents"
DELPHI_CACHE = "delphi"  # delphi's own latent cache, inside a LATENTS directory
# Per (model, variant, layer): the training state of every SAE on the layer after a shard.
LAYER_CHECKPOINT = "results/{model}/{variant}/layers.{layer}/checkpoints/shard-{shard}"
# Per SAE: its directory (the SAE in sae/, its metrics, its training curve), and its auto-interpretation
# by one explainer.
SAE_DIR = "results/{model}/{variant}/x{expansion}-k{k}/layers.{layer}"
AUTOINTERP_DIR = SAE_DIR + "/autointerp/{explainer}"
CURVE_FILE = "training_curve.csv"  # each SAE's training curve, beside it (saerand.sae_training)
# The study's tables and figures.
METRICS_TABLE = "results/metrics.csv"
METRICS_PROVENANCE = "results/metrics.provenance.json"
CLAIMS_TABLE = "results/claims.csv"
CLAIMS_PROVENANCE = "results/claims.provenance.json"
SAE_METRICS_FIGURE = "results/figures/sae_metrics.png"
SWEEP_FIGURE = "results/figures/hyperparameter_sweep.png"
TRAINING_CURVES_FIGURE = "results/figures/training_curves_{model}.png"
ROC_FIGURE = "results/figures/roc_{model}_{explainer}.png"
APPENDIX_D_FIGURE = "results/figures/appendix_d_{model}_{explainer}.png"
EXAMPLES_TABLE = "results/autointerp/examples_{model}_{explainer}.csv"
LLM_SERVER = "results/autointerp/servers/llm-{batch}.json"
BROWSER = "results/browser/{model}_{explainer}"
PUBLISH_RECEIPT = "results/publish/receipt.json"
# Section 4.
TOY_SEED_TABLE = "results/toy/{toy_dataset}/seed-{seed}.csv"
TOY_SEED_PROVENANCE = "results/toy/{toy_dataset}/seed-{seed}.provenance.json"
TOY_METRICS = "results/toy/{toy_dataset}/metrics.csv"
TOY_FIGURES = "results/toy/{toy_dataset}/figures"
FIGURE4 = "results/toy/figures/figure4_lomax.png"


def sae_directory(model: str, variant: str, layer: int | str, expansion_factor: int | str, k: int | str) -> str:
    return SAE_DIR.format(model=model, variant=variant, layer=layer, expansion=expansion_factor, k=k)


def autointerp_directory(sae_dir: str, explainer: str) -> str:
    return f"{sae_dir}/autointerp/{explainer}"


def layer_checkpoint_directory(model: str, variant: str, layer: int | str, shard: int | str) -> str:
    """Training state of every SAE trained on a layer after a shard: one subdirectory per SAE,
    named by its label, so each SAE keeps its own checkpoint chain."""
    return LAYER_CHECKPOINT.format(model=model, variant=variant, layer=layer, shard=shard)


def latents_directory(model: str, variant: str) -> str:
    return LATENTS.format(model=model, variant=variant)


def delphi_cache(latents_dir: str | Path) -> str:
    return f"{latents_dir}/{DELPHI_CACHE}"


def tokens_store(model: str, split: str) -> str:
    return TOKENS.format(model=model, split=split)


def train_shard(node_local_dir: str | None, workdir: str | Path = ".") -> str:
    """Where training shards live: under results/, or, with config `cache.node_local_dir`, in that
    directory on the GPU node that caches and trains on them (one shard group is one cluster job),
    in a folder named after the study's working directory so that two studies never share one."""
    if node_local_dir is None:
        return TRAIN_SHARD
    study = hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:12]
    return f"{node_local_dir.rstrip('/')}/saerand-{study}/{TRAIN_SHARD.removeprefix('results/')}"


def embedded_model_dir(name: str) -> Path:
    return EMBEDDED_MODELS_DIR / name
