# Tokenization: each model's text, cut into fixed-length sequences once, shared by its variants.


rule tokenize_text:
    input:
        model_files,
        text_inputs,
    output:
        directory("results/{model}/tokens/{split}.zarr"),
    params:
        model=model_settings,
        dataset=lambda wc: config["datasets"][wc.split],
        n_tokens=lambda wc: config["tokens"][f"{wc.split}_tokens"],
        context_length=config["tokens"]["context_length"],
    log:
        "logs/tokenize_text/{model}/{split}.log",
    benchmark:
        "benchmarks/tokenize_text/{model}/{split}.tsv"
    conda:
        "../../envs/cache.yaml"
    script:
        "../scripts/tokenize_text.py"
