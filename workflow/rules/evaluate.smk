# Evaluation: quality metrics of each SAE on held-out activations.


rule evaluate_sae:
    input:
        sae="results/{model}/{variant}/layers.{layer}/sae",
        cache="results/{model}/{variant}/cache/eval.zarr",
    output:
        "results/{model}/{variant}/layers.{layer}/metrics.json",
    params:
        evaluation=config["evaluation"],
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
