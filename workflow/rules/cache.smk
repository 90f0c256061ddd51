# Activation caching: one forward pass per (model, variant, split) stores every selected layer.


rule cache_activations:
    input:
        model_files,
    output:
        directory("results/{model}/{variant}/cache/{split}.zarr"),
    params:
        model=model_settings,
        layers=cached_layers,
        dataset=lambda wc: config["datasets"][wc.split],
        n_tokens=lambda wc: config["tokens"][f"{wc.split}_tokens"],
        context_length=config["tokens"]["context_length"],
        cache=config["cache"],
        variant_seed=config["variant_seed"],
    threads: 2
    resources:
        runtime=120,
    log:
        "logs/cache_activations/{model}/{variant}/{split}.log",
    benchmark:
        "benchmarks/cache_activations/{model}/{variant}/{split}.tsv"
    conda:
        "../../envs/cache.yaml"
    script:
        "../scripts/cache_activations.py"
