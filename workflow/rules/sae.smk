# SAE training: one TopK SAE per (model, variant, layer), trained shard by shard. Each shard's job
# resumes from the previous shard's checkpoint (weights, optimizer, counters), so a killed job
# loses at most one shard of work; the last checkpoint becomes the SAE in sparsify's format.


rule train_sae_shard:
    input:
        shard="results/{model}/{variant}/cache/train/shard-{shard}.zarr",
        previous=previous_checkpoint,
    output:
        temp(directory("results/{model}/{variant}/layers.{layer}/checkpoints/shard-{shard}")),
    params:
        sae=config["sae"],
        context_length=config["tokens"]["context_length"],
        train_tokens=config["tokens"]["train_tokens"],
    # Training before caching further ahead keeps about two shards on disk.
    priority: 10
    threads: 2
    resources:
        runtime=240,
    log:
        "logs/train_sae_shard/{model}/{variant}/layers.{layer}/shard-{shard}.log",
    benchmark:
        "benchmarks/train_sae_shard/{model}/{variant}/layers.{layer}/shard-{shard}.tsv"
    conda:
        "../../envs/sae.yaml"
    script:
        "../scripts/train_sae_shard.py"


rule train_sae:
    input:
        last_checkpoint,
    output:
        directory("results/{model}/{variant}/layers.{layer}/sae"),
    params:
        sae=config["sae"],
    log:
        "logs/train_sae/{model}/{variant}/layers.{layer}.log",
    benchmark:
        "benchmarks/train_sae/{model}/{variant}/layers.{layer}.tsv"
    conda:
        "../../envs/sae.yaml"
    script:
        "../scripts/train_sae.py"
