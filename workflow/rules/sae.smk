# SAE training: one TopK SAE per (model, variant, layer), saved in sparsify's format.


rule train_sae:
    input:
        cache="results/{model}/{variant}/cache/train.zarr",
    output:
        directory("results/{model}/{variant}/layers.{layer}/sae"),
    params:
        sae=config["sae"],
        context_length=config["tokens"]["context_length"],
    threads: 2
    resources:
        runtime=240,
    log:
        "logs/train_sae/{model}/{variant}/layers.{layer}.log",
    benchmark:
        "benchmarks/train_sae/{model}/{variant}/layers.{layer}.tsv"
    conda:
        "../../envs/sae.yaml"
    script:
        "../scripts/train_sae.py"
