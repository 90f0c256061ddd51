# Wildcards, targets and per-model inputs shared by every stage.

import dataclasses
import functools
import json
import os
import re
from pathlib import Path

from saerand import retries
from saerand.costs import StudyCosts, estimated_mb
from saerand.rules import (
    BENCHMARKS,
    FINISH_GROUP,
    FINISH_GROUP_RULES,
    GPU_RULES,
    LLM_GROUP,
    LLM_GROUP_RULES,
    RESUMABLE_RULES,
    SHARD_GROUP,
    SHARD_GROUP_RULES,
    CPU_AUTOINTERP_GROUP,
    CPU_AUTOINTERP_GROUP_RULES,
)
from saerand.planner import group_components
from saerand.paths import (
    APPENDIX_D_FIGURE,
    AUTOINTERP_DIR,
    BROWSER,
    CLAIMS_PROVENANCE,
    CLAIMS_TABLE,
    CORPUS_DIR,
    EVAL_CACHE,
    EXAMPLES_TABLE,
    FIGURE4,
    LATENTS,
    LAYER_CHECKPOINT,
    LLM_SERVER,
    METRICS_PROVENANCE,
    METRICS_TABLE,
    PUBLISH_RECEIPT,
    ROC_FIGURE,
    SAE_DIR,
    SAE_METRICS_FIGURE,
    SWEEP_FIGURE,
    TOKENS,
    TOY_FIGURES,
    TOY_METRICS,
    TOY_SEED_PROVENANCE,
    TOY_SEED_TABLE,
    TRAINING_CURVES_FIGURE,
    embedded_model_dir,
    latents_directory,
    layer_checkpoint_directory,
    tokens_store,
    train_shard,
)
from saerand.study import (
    SaeTarget,
    Study,
    glove_paths,
    main_hyperparameters,
    model_location,
    point_settings,
    token_split,
)
from saerand.fetch.artefacts import hub_dataset, llm_artefact, model_artefacts, study_artefacts
from saerand.fetch.offline import RECORDS, record_path
from saerand.captions import deviations
from saerand.reruns import result_defining
from saerand.settings import AutointerpSettings, section_settings
from saerand.toy.glove import glove_downloads, glove_hint
from saerand.toy.sweep import SUPERPOSITION
from saerand.variant_registry import VARIANTS
from saerand.autointerp.explainers import EXPLAINERS, OFFLINE as OFFLINE_EXPLAINERS, SERVED as SERVED_EXPLAINERS

STUDY = Study.of(config)
# An LLM server's batch of SAEs fits in the GPU partition's time limit (saerand.retries: the site's
# cap, or the partition's own; none for a local run). Asked when the DAG is built: only then does
# Snakemake know its executor, and a local run asks no Slurm.
COSTS = StudyCosts(config, STUDY, gpu_runtime_cap=lambda: retries.runtime_cap(gpu=True, environ=cluster_caps()))
TOY_DATASETS = STUDY.toy_datasets


wildcard_constraints:
    model="|".join(map(re.escape, config["models"])),
    variant="|".join(VARIANTS),
    layer=r"\d+",
    split="train|eval|autointerp",
    explainer="|".join(EXPLAINERS),
    shard=r"\d+",
    batch=r"\d+",
    expansion=r"\d+",
    k=r"\d+",
    embedded=re.escape(SETTINGS.embedded_model.name if SETTINGS.embedded_model else "no-embedded-model"),
    toy_dataset="|".join(map(re.escape, TOY_DATASETS)) or "no-toy-dataset",


SAE_TARGETS = STUDY.targets
TRAIN_SHARDS = STUDY.shards


# The report (snakemake --report): categories by the paper's sections, and the captions' notes on
# where this config differs from the paper.
CLAIMS = "1. Claims"
SECTION3 = "2. Section 3: SAEs on transformers"
SECTION33 = "3. Section 3.3: auto-interpretability"
SECTION4 = "4. Section 4: toy models"
DEVIATIONS = deviations(SETTINGS)


# What comes from the network (workflow/rules/prefetch.smk): the download cache's records, and the
# configured GloVe files that are not on disk yet (path -> file of glove.6B.zip).
PREFETCH = config["prefetch"]
FETCH_RECORDS = str(Path(PREFETCH["hf_home"]) / RECORDS)
HUB_ARTEFACTS = study_artefacts(config)
HUB_RECORDS = {name: str(record_path(PREFETCH["hf_home"], name)) for name in HUB_ARTEFACTS}
GLOVE_DOWNLOADS = glove_downloads(glove_paths(config))


def fetched(artefact):
    """A job's input for a fetched artefact: its record, whose age never reruns the job (a refetch
    of the same artefact changes nothing; a changed revision does, through the job's params)."""
    return [] if artefact is None else ancient(HUB_RECORDS[artefact.name])


def subject_model_files(model, variant=None):
    """The embedded model is built by the workflow; a hub model's revisions (the variant's weights
    and the tokenizer's) are fetched beforehand."""
    if SETTINGS.models[model].embedded:
        return str(embedded_model_dir(model))
    return [fetched(artefact) for artefact in model_artefacts(config, model, variant)]


def model_files(wildcards):
    return subject_model_files(wildcards.model, wildcards.get("variant"))


def model_settings(wildcards):
    return {
        "location": model_location(wildcards.model, config["models"][wildcards.model]),
        **result_defining("model", config["models"][wildcards.model]),
    }


# Jobs' params hold the settings that define their results (saerand.reruns): the operational ones
# (devices, batch sizes of forward passes, timeouts, the LLM server's resources) reach the scripts
# through the run's config, so changing them reruns nothing finished.
CACHE_PARAMS = result_defining("cache", config["cache"])
SAE_PARAMS = result_defining("sae", config["sae"])
EVALUATION_PARAMS = result_defining("evaluation", config["evaluation"])


def variant_targets(wildcards):
    return [t for t in SAE_TARGETS if (t.model, t.variant) == (wildcards.model, wildcards.variant)]


def cached_layers(wildcards):
    return sorted({target.layer for target in variant_targets(wildcards)})


def sae_settings(wildcards):
    """The study's SAE settings at this path's hyperparameters."""
    return point_settings(SAE_PARAMS, SaeTarget.from_wildcards(wildcards).hyperparameters)


def text_inputs(wildcards):
    """Corpus files the workflow writes itself (the embedded default), or the fetched hub data."""
    dataset = token_split(config, wildcards.split)["dataset"]
    data_files = dataset.get("data_files") or ""
    return data_files if data_files.startswith(f"{CORPUS_DIR}/") else fetched(hub_dataset(dataset))


def cluster_step_cpus(wildcards):
    """CPUs of the `srun` step that runs a job or group inside its cluster job: what Slurm
    allocated, fewer than Snakemake sees where CPUs are not bound to jobs (None outside one).
    There the profile gives every GPU-partition job all the CPUs Snakemake sees (set-threads), so
    a group's jobs run one at a time in a one-GPU step however many CPUs the node grants or shows."""
    allocated = os.environ.get("SLURM_CPUS_ON_NODE")
    return int(allocated) if workflow.remote_exec and allocated else None


# Cluster job groups (saerand.rules) are SHARD_GROUP, FINISH_GROUP and LLM_GROUP.

# A (model, variant)'s training activations, shard by shard: on the shared filesystem, or node-local
# (Snakemake's nodelocal flag: the head process never looks for them).
NODE_LOCAL_SHARDS = config["cache"]["node_local_dir"] is not None
TRAIN_SHARD = train_shard(config["cache"]["node_local_dir"])


def unfinished_targets(wildcards):
    """This (model, variant)'s SAEs that do not exist yet: those still to train."""
    return [target for target in variant_targets(wildcards) if not Path(target.directory, "sae").exists()]


def shard_lookahead(wildcards):
    """Shard s waits until every layer still in training has finished shard s - 2.

    Layers whose SAEs all exist are not waited for, so rebuilding one SAE never asks for the
    others' (deleted) checkpoints and never retrains them.
    """
    shard = int(wildcards.shard)
    if shard < 2:
        return []
    layers = sorted({target.layer for target in unfinished_targets(wildcards)})
    return [layer_checkpoint_directory(wildcards.model, wildcards.variant, layer, shard - 2) for layer in layers]


def chain_before_finished(wildcards):
    """The first two shards of a (model, variant) wait for the chain before it in its scratch lane to
    finish training (config `scratch_budget`), unless that chain's SAEs already exist; later shards
    wait for this chain's own earlier ones (shard_lookahead)."""
    before = COSTS.chain_before(wildcards.model, wildcards.variant) if int(wildcards.shard) < 2 else None
    return [
        f"{target.directory}/sae"
        for target in SAE_TARGETS
        if (target.model, target.variant) == before and not Path(target.directory, "sae").exists()
    ]


def previous_layer_checkpoint(wildcards):
    shard = int(wildcards.shard)
    return (
        layer_checkpoint_directory(wildcards.model, wildcards.variant, wildcards.layer, shard - 1) if shard > 0 else []
    )


def last_layer_checkpoint(wildcards):
    return layer_checkpoint_directory(wildcards.model, wildcards.variant, wildcards.layer, len(TRAIN_SHARDS) - 1)


# Cluster resources from the cost model (saerand.costs): memory and time limit scale with the
# model and SAE sizes; after a failed attempt saerand.retries raises time only after a time-out and
# memory only after an out-of-memory kill, up to the site's caps.
# Jobs outside the cost model (corpus, tokenizer, tokenization, aggregation, plots): 4 GB and 2
# hours to start with, the embedded model's training 1 hour. Snakemake passes `rulename`.
CPU_JOB_MB, CPU_JOB_MINUTES = 4000, 120
CPU_JOB_MINUTES_BY_RULE = {"train_embedded_model": 60}
FINISH_BATCH = group_components(FINISH_GROUP)
CPU_AUTOINTERP_BATCH = group_components(CPU_AUTOINTERP_GROUP)


def cluster_caps():
    """Where the partitions' limits are read (saerand.retries): the environment and sinfo, for a run
    that submits jobs (and the jobs inside it) and for a dry run, which plans for one; None for a local
    run, which no partition bounds, even on a login node that has Slurm."""
    plugin = workflow.executor_plugin
    return None if plugin is not None and plugin.name == "local" else os.environ


def job_mem_mb(wildcards, attempt, rulename):
    cost = COSTS.job_cost(rulename, dict(wildcards.items()))
    base = CPU_JOB_MB if cost is None else estimated_mb(cost)
    failures = retries.earlier_failures(rulename, wildcards, attempt)
    return retries.memory_mb(base, failures, on_gpu_partition(rulename), cluster_caps())


def on_gpu_partition(rulename):
    """GPU jobs and the jobs grouped with them (profiles/slurm): the GPU partition's caps apply."""
    return rulename in GPU_RULES or rulename in FINISH_GROUP_RULES or rulename in LLM_GROUP_RULES


def base_minutes(rulename, wildcards):
    """A job's estimated minutes (the cost model's, or the default of jobs outside it). An LLM server
    runs as long as the SAEs it serves, which run at once."""
    rulename = "autointerp_llm" if rulename == "llm_server" else rulename
    cost = COSTS.job_cost(rulename, dict(wildcards.items()))
    if cost is None:
        return CPU_JOB_MINUTES_BY_RULE.get(rulename, CPU_JOB_MINUTES)
    return COSTS.estimated_minutes(rulename, cost)


def group_minutes(rulename, wildcards):
    """Estimated minutes of every job in the cluster job that runs this one (profiles/slurm groups,
    whose jobs run one after the other), or None for a job alone."""
    if rulename in SHARD_GROUP_RULES:
        shard = {key: wildcards[key] for key in ("model", "variant", "shard")}
        layers = [
            base_minutes("train_layer_shard", {**shard, "layer": str(layer)}) for layer in cached_layers(wildcards)
        ]
        return base_minutes("cache_train_shard", shard) + sum(layers)
    members = {"finalize_sae": FINISH_GROUP_RULES, "evaluate_sae": FINISH_GROUP_RULES}.get(rulename)
    if members:  # a batch of SAEs like this one
        batch = min(FINISH_BATCH, len(variant_targets(wildcards)))
        return batch * sum(base_minutes(rule, wildcards) for rule in members)
    if rulename in CPU_AUTOINTERP_GROUP_RULES:
        return min(CPU_AUTOINTERP_BATCH, len(autointerp_variant_targets(wildcards))) * base_minutes(rulename, wildcards)
    return None


def job_runtime(wildcards, attempt, rulename):
    """The time limit: the estimate, raised after time-outs within the partition's cap; planning stops
    (saerand.retries.CannotFinish) where an estimated job that cannot resume would not fit at all."""
    estimated = COSTS.job_cost(rulename, dict(wildcards.items())) is not None
    # A batch of finished SAEs is a convenience (a smaller one would do): only a shard's jobs, which
    # share one shard's activations, and jobs alone must fit as they are.
    indivisible = rulename in SHARD_GROUP_RULES or group_minutes(rulename, wildcards) is None
    return retries.runtime_minutes(
        base_minutes(rulename, wildcards),
        retries.earlier_failures(rulename, wildcards, attempt),
        on_gpu_partition(rulename),
        cluster_caps(),
        group_minutes=group_minutes(rulename, wildcards),
        must_fit=(
            f"{rulename} ({', '.join(f'{k}={v}' for k, v in wildcards.items())})"
            if estimated and indivisible and rulename not in RESUMABLE_RULES
            else None
        ),
    )


def job_time_exhausted(wildcards, attempt, rulename):
    """Minutes of the limit at which the last attempt timed out with all the time its partition
    allows; a job that cannot resume then stops at once (saerand.jobs) instead of timing out again."""
    if rulename in RESUMABLE_RULES:
        return 0
    return retries.time_exhausted(
        base_minutes(rulename, wildcards),
        retries.earlier_failures(rulename, wildcards, attempt),
        on_gpu_partition(rulename),
        cluster_caps(),
        group_minutes=group_minutes(rulename, wildcards),
    )


def gpu_constraint(wildcards):
    """Node features a model's GPU jobs need (its `gpu_constraint`, e.g. an 80 GB card for 6.9B), or
    the site's for every GPU job (SAERAND_SLURM_CONSTRAINT); None: any GPU node."""
    model = config["models"].get(wildcards.get("model", ""), {})
    return model.get("gpu_constraint") or os.environ.get("SAERAND_SLURM_CONSTRAINT") or None


def llm_constraint(wildcards):
    """Node features of an LLM server's cluster job (server and clients: one job, one constraint)."""
    return LLM.gpu_constraint or os.environ.get("SAERAND_SLURM_CONSTRAINT") or None


# Section 3.3 (workflow/rules/autointerp.smk): the study's own SAEs, one per (model, variant, layer).
AUTOINTERP = config.get("autointerp")
AUTOINTERP_TARGETS = STUDY.autointerp_targets
# The study's own SAEs among them: the ROC curves and examples (Figures 1, 2, 8-10; Appendix D).
AUTOINTERP_STUDY_TARGETS = [t for t in AUTOINTERP_TARGETS if t.hyperparameters == main_hyperparameters(SETTINGS)]
AUTOINTERP_EXPANSIONS = "|".join(sorted({str(t.expansion_factor) for t in AUTOINTERP_TARGETS})) or "none"
AUTOINTERP_KS = "|".join(sorted({str(t.k) for t in AUTOINTERP_TARGETS})) or "none"
# What collecting latents and the null explainer use: the LLM's settings are not rerun triggers there.
# (Which SAEs, the sweep's too or not, is the `modules` param of collect_latents.)
LATENT_SETTINGS = {
    key: value
    for key, value in result_defining("autointerp", AUTOINTERP or {}).items()
    if key not in ("explainers", "llm", "sweep")
}
AUTOINTERP_LLM = AUTOINTERP["llm"] if AUTOINTERP else {}
# The LLM's settings, typed (defaults where the study has no auto-interp: its rules then have no jobs).
LLM = (SETTINGS.autointerp or section_settings(AutointerpSettings, "autointerp")).llm
SOURCE_DIRECTORY = str(REPOSITORY / "src")  # the server's launcher, run in vLLM's environment


# The study's SAEs in batches of saes_per_server, each served by one server. A batch's SAEs share its
# server's job, so they form one connected job group of their own. (Snakemake's group-local
# `{groupid}` services cannot be used: inside a cluster job the server's job is planned before its
# consumers know the group id, and Snakemake stops with "service ... has no consumer".)
# Fewer than saes_per_server where that many would not finish within the GPU partition's time limit.
@functools.cache
def llm_batches():
    """Each auto-interpreted SAE's server batch (built with the DAG, COSTS's partition cap known)."""
    return {t: i // COSTS.saes_per_server for i, t in enumerate(AUTOINTERP_TARGETS)}


def llm_batch(wildcards):
    return llm_batches()[SaeTarget.from_wildcards(wildcards)]


def autointerp_variant_targets(wildcards):
    return [t for t in AUTOINTERP_TARGETS if (t.model, t.variant) == (wildcards.model, wildcards.variant)]


def autointerp_saes(wildcards):
    return [f"{target.directory}/sae" for target in autointerp_variant_targets(wildcards)]


def autointerp_modules(wildcards):
    """(module, layer) of each SAE, in the order of autointerp_saes."""
    return [[target.autointerp_module, target.layer] for target in autointerp_variant_targets(wildcards)]


# Section 4 (workflow/rules/toy.smk).


def toy_inputs(wildcards):
    """A GloVe file must be readable, or fetched (prefetch.smk), before anything trains; a subject
    model is built or fetched first."""
    spec = TOY_DATASETS[wildcards.toy_dataset]
    if spec["source"] == "glove":
        if spec["path"] in GLOVE_DOWNLOADS:
            return spec["path"]
        if not os.access(spec["path"], os.R_OK) or not Path(spec["path"]).is_file():
            raise ValueError(
                f"config key '{spec['config_key']}': cannot read the GloVe file "
                f"{spec['path']}: {glove_hint(spec['config_key'])}"
            )
        return spec["path"]
    if spec["source"] == "embeddings":
        return subject_model_files(spec["model"])
    return []


def toy_dataset_pattern(on_gpu):
    """The toy datasets whose sweeps run on a GPU (or not), as a wildcard constraint."""
    names = [name for name in TOY_DATASETS if COSTS.toy_on_gpu(name) == on_gpu]
    return "|".join(map(re.escape, names)) or "no-toy-dataset"


def toy_seed_tables(wildcards):
    seeds = TOY_DATASETS[wildcards.toy_dataset]["seeds"]
    return [TOY_SEED_TABLE.format(toy_dataset=wildcards.toy_dataset, seed=seed) for seed in seeds]


def curve_saes(model: str) -> list[list]:
    """[model, variant, layer, expansion, k] of a model's SAEs at the study's own point: its training curves."""
    point = list(main_hyperparameters(SETTINGS))
    return sorted([list(t) for t in SAE_TARGETS if t.model == model and list(t.hyperparameters) == point])
