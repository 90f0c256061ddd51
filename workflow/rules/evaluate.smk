# Evaluation: quality metrics of each SAE on held-out activations, and its reconstruction
# spliced into the model (CE loss and KL divergence scores).


rule evaluate_sae:
    input:
        model_files,
        sae=f"{SAE_DIR}/sae",
        cache=EVAL_CACHE,
    output:
        f"{SAE_DIR}/metrics.json",
    log:
        "logs/evaluate_sae/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        BENCHMARKS["evaluate_sae"]
    group:
        FINISH_GROUP
    conda:
        "../../envs/sae.yaml"
    # One thread: mostly start-up and small matrices, so two such jobs at once use two cores better
    # than one job with two threads.
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
        evaluation=EVALUATION_PARAMS,
        model=model_settings,
        variant_seed=config["variant_seed"],
        seed=config["seed"],
    script:
        "../scripts/evaluate_sae.py"
