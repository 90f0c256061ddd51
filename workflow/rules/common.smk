# Wildcards, targets and per-model inputs shared by every stage.

import os
import re
from pathlib import Path

from saerand.costs import StudyCosts, memory_mb, runtime_minutes
from saerand.config import (
    CORPUS_DIR,
    VARIANTS,
    SaeTarget,
    embedded_model_dir,
    model_location,
    sae_directory,
    token_split,
)
from saerand.toy.glove import glove_hint


COSTS = StudyCosts(config)
TOY_DATASETS = COSTS.toy_datasets


wildcard_constraints:
    model="|".join(map(re.escape, config["models"])),
    variant="|".join(VARIANTS),
    layer=r"\d+",
    split="train|eval",
    shard=r"\d+",
    expansion=r"\d+",
    k=r"\d+",
    embedded=re.escape(config.get("embedded_model", {}).get("name", "no-embedded-model")),
    toy_dataset="|".join(map(re.escape, TOY_DATASETS)) or "no-toy-dataset",


SAE_TARGETS = COSTS.targets
TRAIN_SHARDS = COSTS.shards


def subject_model_files(model):
    """The embedded model is built by the workflow; hub models are fetched by the job itself."""
    if config["models"][model].get("embedded"):
        return str(embedded_model_dir(model))
    return []


def model_files(wildcards):
    return subject_model_files(wildcards.model)


def model_settings(wildcards):
    return {
        "location": model_location(wildcards.model, config["models"][wildcards.model]),
        **config["models"][wildcards.model],
    }


def variant_targets(wildcards):
    return [t for t in SAE_TARGETS if (t.model, t.variant) == (wildcards.model, wildcards.variant)]


def cached_layers(wildcards):
    return sorted({target.layer for target in variant_targets(wildcards)})


def sae_settings(wildcards):
    """The study's SAE settings at this path's hyperparameters."""
    return {**config["sae"], "expansion_factor": int(wildcards.expansion), "k": int(wildcards.k)}


def text_inputs(wildcards):
    """Corpus files the workflow writes itself (the embedded default) are inputs of tokenization."""
    data_files = token_split(config, wildcards.split)["dataset"].get("data_files") or ""
    return data_files if data_files.startswith(f"{CORPUS_DIR}/") else []


# Cluster job groups (ignored by local runs): a shard's caching and the training of every SAE on it
# form one job; finishing and evaluating SAEs are batched per (model, variant) (profiles/slurm sets
# how many per job with group-components).
SHARD_GROUP = "shard-{model}-{variant}-{shard}"
FINISH_GROUP = "finish-{model}-{variant}"

# One SAE's outputs: results/{model}/{variant}/x{expansion}-k{k}/layers.{layer}/...
SAE_DIR = sae_directory("{model}", "{variant}", "{layer}", "{expansion}", "{k}")


def sae_dir(wildcards):
    return sae_directory(wildcards.model, wildcards.variant, wildcards.layer, wildcards.expansion, wildcards.k)


def checkpoint_path(sae_dir, shard):
    return f"{sae_dir}/checkpoints/shard-{shard}"


def shard_lookahead(wildcards):
    """Shard s waits until every SAE still being trained has finished shard s - 2.

    SAEs that already exist are not waited for, so rebuilding one never asks for the others'
    (deleted) checkpoints and never retrains them.
    """
    shard = int(wildcards.shard)
    if shard < 2:
        return []
    return [
        checkpoint_path(target.directory, shard - 2)
        for target in variant_targets(wildcards)
        if not Path(target.directory, "sae").exists()
    ]


def previous_checkpoint(wildcards):
    shard = int(wildcards.shard)
    return checkpoint_path(sae_dir(wildcards), shard - 1) if shard > 0 else []


def last_checkpoint(wildcards):
    return checkpoint_path(sae_dir(wildcards), len(TRAIN_SHARDS) - 1)


# Cluster resources from the cost model (saerand.costs): memory and time limit scale with the
# model and SAE sizes, and grow on every retry (attempt) after a job hit a limit.
def sae_target(wildcards):
    return SaeTarget(wildcards.model, wildcards.variant, int(wildcards.layer), int(wildcards.expansion), int(wildcards.k))


JOB_COSTS = {
    "cache_train_shard": lambda wc: COSTS.cache_train_shard(wc.model, int(wc.shard)),
    "cache_eval": lambda wc: COSTS.cache_eval(wc.model),
    "train_sae_shard": lambda wc: COSTS.train_sae_shard(sae_target(wc), int(wc.shard)),
    "train_sae": lambda wc: COSTS.train_sae(sae_target(wc)),
    "evaluate_sae": lambda wc: COSTS.evaluate_sae(sae_target(wc)),
    "toy_sweep": lambda wc: COSTS.toy_sweep(wc.toy_dataset),
}


def job_mem_mb(rule):
    return lambda wildcards, attempt: memory_mb(JOB_COSTS[rule](wildcards).host_memory_bytes, attempt)


def job_runtime(rule):
    return lambda wildcards, attempt: runtime_minutes(JOB_COSTS[rule](wildcards), attempt)


# Section 4 (workflow/rules/toy.smk).


def toy_inputs(wildcards):
    """A GloVe file must be readable before anything trains; an embedded model is built first."""
    spec = TOY_DATASETS[wildcards.toy_dataset]
    if spec["source"] == "glove":
        if not os.access(spec["path"], os.R_OK) or not Path(spec["path"]).is_file():
            raise ValueError(f"config key '{spec['config_key']}': cannot read the GloVe file "
                             f"{spec['path']}: {glove_hint(spec['config_key'])}")
        return spec["path"]
    if spec["source"] == "embeddings":
        return subject_model_files(spec["model"])
    return []


def toy_seed_tables(wildcards):
    seeds = TOY_DATASETS[wildcards.toy_dataset]["seeds"]
    return [f"results/toy/{wildcards.toy_dataset}/seed-{seed}.csv" for seed in seeds]
