"""The rules' cluster job groups and the benchmark files of the rules the cost model times, stated
once. The rules (workflow/rules), the cost model's calibration and the planner read them from here;
profiles/slurm names the groups in its group-components (tests/test_slurm_profile.py checks them)."""

from __future__ import annotations

# Cluster job groups (local runs ignore them): a (model, variant, shard)'s caching and the training
# of every SAE on it (one job per layer) form one cluster job; finishing and evaluating SAEs are
# batched per (model, variant), group-components of them per cluster job; a vLLM server and the
# auto-interp jobs of the SAEs it serves run at once in one.
SHARD_GROUP = "shard-{model}-{variant}-{shard}"
SHARD_GROUP_RULES = ("cache_train_shard", "train_layer_shard")
FINISH_GROUP = "finish-{model}-{variant}"
FINISH_GROUP_RULES = ("finalize_sae", "evaluate_sae")
LLM_GROUP = "autointerp_llm"
LLM_GROUP_RULES = ("llm_server", "autointerp_llm")
# The null explainer's CPU jobs (one per SAE, minutes each), batched per (model, variant).
CPU_AUTOINTERP_GROUP = "autointerp-cpu-{model}-{variant}"
CPU_AUTOINTERP_GROUP_RULES = ("autointerp_cpu",)
# Jobs that continue where an earlier attempt stopped: a time-out at the partition's limit still
# leaves them nearer the end (the LLM's clients latent by latent, the toy sweeps point by point).
# Every other job starts over, so it must fit in its partition's time limit.
RESUMABLE_RULES = ("llm_server", "autointerp_llm", "toy_sweep", "toy_sweep_gpu")

# Rules Snakemake runs itself, where it runs (the login node): never cluster jobs. The fetches and
# the upload (publish) need the network that compute nodes lack; the aggregations and plots take
# seconds, less than a cluster job's queueing. (The Snakefile declares them; the planner counts them apart.)
LOCAL_RULES = (
    "fetch_hub",
    "fetch_glove",
    "publish",
    "aggregate_metrics",
    "plot_hyperparameter_sweep",
    "claims",
    "training_curves",
    "autointerp_figures",
    "latent_browser",
    "toy_aggregate",
    "toy_figure4",
)

# The benchmark file of each job whose time the cost model predicts (saerand.costs), as its rule
# writes it; the planner and saerand.status calibrate the model from them.
BENCHMARKS = {
    "cache_train_shard": "benchmarks/cache_train_shard/{model}/{variant}/shard-{shard}.tsv",
    "cache_eval": "benchmarks/cache_eval/{model}/{variant}.tsv",
    "train_layer_shard": "benchmarks/train_layer_shard/{model}/{variant}/layers.{layer}/shard-{shard}.tsv",
    "evaluate_sae": "benchmarks/evaluate_sae/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv",
    "collect_latents": "benchmarks/collect_latents/{model}/{variant}.tsv",
    "toy_sweep_gpu": "benchmarks/toy_sweep_gpu/{toy_dataset}/seed-{seed}.tsv",
    # Served explainers only (saerand.autointerp.explainers.SERVED): the null explainer's jobs are not GPU jobs.
    "autointerp_llm": "benchmarks/autointerp_{explainer}/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv",
}
# The GPU jobs (profiles/slurm sends them to the GPU partition; tests/test_slurm_profile.py checks):
# the ones the cost model times in GPU-hours, calibrated from their benchmark files.
GPU_RULES = tuple(BENCHMARKS)
