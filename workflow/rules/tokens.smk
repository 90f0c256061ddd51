# Tokenization: each model's text, shuffled by document and cut into fixed-length sequences once,
# shared by its variants. Without a separate held-out dataset, eval takes the stream's first
# sequences and train the ones after them.


rule tokenize_text:
    input:
        model_files,
        text_inputs,
    output:
        directory(TOKENS),
    log:
        "logs/tokenize_text/{model}/{split}.log",
    benchmark:
        "benchmarks/tokenize_text/{model}/{split}.tsv"
    conda:
        "../../envs/cache.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        model=model_settings,
        text=lambda wc: token_split(config, wc.split),
        context_length=config["tokens"]["context_length"],
    script:
        "../scripts/tokenize_text.py"
