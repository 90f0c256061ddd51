# SAE training: every SAE of a (model, variant, layer) — the study's own and the sweep's — trains in
# one job per shard, from one read of each batch, each exactly as it would alone. Each shard's job
# resumes from the previous shard's checkpoint (weights, optimizer, counters; one subdirectory per
# SAE, so each SAE keeps its own chain), so a killed job loses at most one shard of work; each SAE's
# last checkpoint becomes the SAE in sparsify's format.


rule train_layer_shard:
    input:
        # ancient: a shard re-cached for one layer's chain does not restart the other layers' chains.
        shard=ancient(TRAIN_SHARD),
        previous=previous_layer_checkpoint,
    output:
        temp(directory(LAYER_CHECKPOINT)),
    log:
        "logs/train_layer_shard/{model}/{variant}/layers.{layer}/shard-{shard}.log",
    benchmark:
        BENCHMARKS["train_layer_shard"]
    # Training before caching further ahead keeps about two shards on disk.
    priority: 10
    group:
        SHARD_GROUP
    conda:
        "../../envs/sae.yaml"
    # One thread: small matrices, so two such jobs at once use two cores better than one job with
    # two threads (the Slurm profile gives a GPU job all its CPUs).
    threads: 1
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
        cpus_per_task=cluster_step_cpus,
        gpu=1,
        nodes=1,
        constraint=gpu_constraint,
        time_exhausted=job_time_exhausted,
    params:
        sae=SAE_PARAMS,
        context_length=config["tokens"]["context_length"],
        train_tokens=config["tokens"]["train_tokens"],
    script:
        "../scripts/train_layer_shard.py"


rule finalize_sae:
    input:
        last_layer_checkpoint,
    # Write-protected once finished: only a user's deliberate removal retrains it.
    output:
        protected(directory(f"{SAE_DIR}/sae")),
    log:
        "logs/finalize_sae/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        "benchmarks/finalize_sae/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv"
    group:
        FINISH_GROUP
    conda:
        "../../envs/sae.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
        cpus_per_task=cluster_step_cpus,
        nodes=1,
        constraint=gpu_constraint,
        time_exhausted=job_time_exhausted,
    params:
        sae=sae_settings,
    script:
        "../scripts/finalize_sae.py"
