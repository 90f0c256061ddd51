# The offline default's own subject model: corpus -> tokenizer -> tiny GPT-NeoX (step0 and main),
# in a study that has one.


if SETTINGS.embedded_model:

    rule prepare_corpus:
        output:
            train="resources/corpus/train.txt",
            eval="resources/corpus/eval.txt",
            provenance="resources/corpus/provenance.json",
        log:
            "logs/prepare_corpus.log",
        benchmark:
            "benchmarks/prepare_corpus.tsv"
        conda:
            "../../envs/embedded_model.yaml"
        resources:
            mem_mb=job_mem_mb,
            runtime=job_runtime,
        params:
            corpus=config["embedded_model"]["corpus"],
        script:
            "../scripts/prepare_corpus.py"

    rule train_tokenizer:
        input:
            train="resources/corpus/train.txt",
        output:
            directory("resources/tokenizers/{embedded}"),
        log:
            "logs/train_tokenizer/{embedded}.log",
        benchmark:
            "benchmarks/train_tokenizer/{embedded}.tsv"
        conda:
            "../../envs/embedded_model.yaml"
        resources:
            mem_mb=job_mem_mb,
            runtime=job_runtime,
        params:
            vocab_size=config["embedded_model"]["tokenizer"]["vocab_size"],
            context_length=config["embedded_model"]["architecture"]["context_length"],
        script:
            "../scripts/train_tokenizer.py"

    rule train_embedded_model:
        input:
            tokenizer="resources/tokenizers/{embedded}",
            train="resources/corpus/train.txt",
            eval="resources/corpus/eval.txt",
        output:
            directory("resources/models/{embedded}"),
        log:
            "logs/train_embedded_model/{embedded}.log",
        benchmark:
            "benchmarks/train_embedded_model/{embedded}.tsv"
        conda:
            "../../envs/embedded_model.yaml"
        threads: 2
        resources:
            mem_mb=job_mem_mb,
            runtime=job_runtime,
        params:
            embedded=config["embedded_model"],
        script:
            "../scripts/train_embedded_model.py"
