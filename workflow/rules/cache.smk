# Activation caching: one forward pass stores every selected layer of a (model, variant).
# Training text is cached shard by shard (tokens.buffer_tokens each); a shard is temporary and
# deleted once every layer has trained on it. Shard s is cached only after every layer still in
# training finished shard s - 2, so a (model, variant) holds at most two shards on disk; with a
# scratch_budget, a (model, variant) starts only when the one before it in its lane has finished.
# Held-out text is one store, kept for evaluation.


rule cache_train_shard:
    input:
        model_files,
        tokens=tokens_store("{model}", "train"),
        lookahead=shard_lookahead,
        scratch_lane=chain_before_finished,
    output:
        temp(directory(TRAIN_SHARD), group_jobs=NODE_LOCAL_SHARDS),
    log:
        "logs/cache_train_shard/{model}/{variant}/shard-{shard}.log",
    benchmark:
        BENCHMARKS["cache_train_shard"]
    group:
        SHARD_GROUP
    conda:
        "../../envs/cache.yaml"
    # One thread where the profile sets none (profiles/slurm gives GPU jobs their CPUs): at two, a
    # job waits for both cores of a workstation and then keeps about one busy (measured on the demo).
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
        model=model_settings,
        layers=cached_layers,
        sequences=lambda wc: TRAIN_SHARDS[int(wc.shard)],
        store=lambda wc: {"split": "train", "shard": int(wc.shard)},
        cache=CACHE_PARAMS,
        variant_seed=config["variant_seed"],
    script:
        "../scripts/cache_activations.py"


rule cache_eval:
    input:
        model_files,
        tokens=tokens_store("{model}", "eval"),
    output:
        directory(EVAL_CACHE),
    log:
        "logs/cache_eval/{model}/{variant}.log",
    benchmark:
        BENCHMARKS["cache_eval"]
    conda:
        "../../envs/cache.yaml"
    # One thread where the profile sets none (profiles/slurm gives GPU jobs their CPUs): at two, a
    # job waits for both cores of a workstation and then keeps about one busy (measured on the demo).
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
        model=model_settings,
        layers=cached_layers,
        sequences=None,
        store={"split": "eval", "shard": 0},
        cache=CACHE_PARAMS,
        variant_seed=config["variant_seed"],
    script:
        "../scripts/cache_activations.py"
