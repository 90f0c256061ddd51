# SAE training: one TopK SAE per (model, variant, layer), trained shard by shard. Each shard's job
# resumes from the previous shard's checkpoint (weights, optimizer, counters), so a killed job
# loses at most one shard of work; the last checkpoint becomes the SAE in sparsify's format.


rule train_sae_shard:
    input:
        shard="results/{model}/{variant}/cache/train/shard-{shard}.zarr",
        previous=previous_checkpoint,
    output:
        temp(directory(checkpoint_path(SAE_DIR, "{shard}"))),
    params:
        sae=sae_settings,
        context_length=config["tokens"]["context_length"],
        train_tokens=config["tokens"]["train_tokens"],
    # Training before caching further ahead keeps about two shards on disk.
    priority: 10
    # One thread: mostly start-up and small matrices, so two such jobs at once use two cores better
    # than one job with two threads.
    threads: 1
    group:
        SHARD_GROUP
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
        cpus_per_task=cluster_step_cpus,
    log:
        "logs/train_sae_shard/{model}/{variant}/x{expansion}-k{k}/layers.{layer}/shard-{shard}.log",
    benchmark:
        "benchmarks/train_sae_shard/{model}/{variant}/x{expansion}-k{k}/layers.{layer}/shard-{shard}.tsv"
    conda:
        "../../envs/sae.yaml"
    script:
        "../scripts/train_sae_shard.py"


rule train_sae:
    input:
        last_checkpoint,
    output:
        directory(f"{SAE_DIR}/sae"),
    params:
        sae=sae_settings,
    threads: 1
    group:
        FINISH_GROUP
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
        cpus_per_task=cluster_step_cpus,
    log:
        "logs/train_sae/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        "benchmarks/train_sae/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv"
    conda:
        "../../envs/sae.yaml"
    script:
        "../scripts/train_sae.py"
