# Evaluation: quality metrics of each SAE on held-out activations, and its reconstruction
# spliced into the model (CE loss and KL divergence scores).


rule evaluate_sae:
    input:
        model_files,
        sae="results/{model}/{variant}/layers.{layer}/sae",
        cache="results/{model}/{variant}/cache/eval.zarr",
    output:
        "results/{model}/{variant}/layers.{layer}/metrics.json",
    params:
        evaluation=config["evaluation"],
        model=model_settings,
        variant_seed=config["variant_seed"],
    threads: 2
    resources:
        runtime=60,
    log:
        "logs/evaluate_sae/{model}/{variant}/layers.{layer}.log",
    benchmark:
        "benchmarks/evaluate_sae/{model}/{variant}/layers.{layer}.tsv"
    conda:
        "../../envs/sae.yaml"
    script:
        "../scripts/evaluate_sae.py"
