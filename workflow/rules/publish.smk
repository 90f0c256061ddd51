# Publishing (saerand.publish), never by default: `snakemake publish` uploads every SAE of the study
# (sparsify's files and provenance, SAELens exports with publish.saelens), the metrics table and a
# model card made from their provenance, metrics and auto-interp summaries to the hub repository
# publish.repo, in one commit. A local rule (saerand.rules): it needs the network, which only the
# node Snakemake runs on has (as the fetch rules), and it is network I/O, no compute. The token is read by the job
# from the environment variable publish.token_env: it is no param, so no file Snakemake writes holds it.

PUBLISH = config["publish"]
# [model, variant, layer, expansion, k] of every SAE of the study, sorted.
PUBLISHED_SAES = sorted([list(target) for target in SAE_TARGETS])


rule publish:
    input:
        saes=[f"{SaeTarget(*sae).directory}/sae" for sae in PUBLISHED_SAES],
        metrics=[f"{SaeTarget(*sae).directory}/metrics.json" for sae in PUBLISHED_SAES],
        autointerp=(
            [f"{t.directory}/autointerp/{e}" for t in AUTOINTERP_TARGETS for e in AUTOINTERP["explainers"]]
            if AUTOINTERP
            else []
        ),
        saelens=[f"{SaeTarget(*sae).directory}/saelens" for sae in PUBLISHED_SAES] if PUBLISH["saelens"] else [],
        table=METRICS_TABLE,
        citation=str(REPOSITORY / "CITATION.cff"),
    output:
        receipt=PUBLISH_RECEIPT,
    log:
        "logs/publish.log",
    benchmark:
        "benchmarks/publish.tsv"
    conda:
        "../../envs/aggregate.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        repo=PUBLISH["repo"],
        private=PUBLISH["private"],
        saelens=PUBLISH["saelens"],
        token_env=PUBLISH["token_env"],
        saes=PUBLISHED_SAES,
        autointerp_saes=[list(t) for t in AUTOINTERP_TARGETS],
        explainers=AUTOINTERP["explainers"] if AUTOINTERP else [],
        reading=config["evaluation"]["figure_reading"],
    script:
        "../scripts/publish.py"
