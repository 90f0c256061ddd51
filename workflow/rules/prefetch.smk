# Everything the study takes from the network, fetched once where Snakemake runs (the login node of
# a cluster: saerand.rules.LOCAL_RULES) before any cluster job reads it. Hub models at each revision,
# hub datasets and the LLM's weights go into the download cache (prefetch.hf_home, an HF_HOME), each
# verified against its published checksums and then recorded; GloVe's zip is verified, unzipped where
# its config keys point, and removed. Every other job reads the hub offline (Snakefile) and has the
# records of what it reads as inputs, so `snakemake prefetch` alone fetches the whole study's.


rule prefetch:
    input:
        list(HUB_RECORDS.values()),
        list(GLOVE_DOWNLOADS),


rule fetch_hub:
    output:
        f"{FETCH_RECORDS}/{{artefact}}.json",
    log:
        "logs/fetch_hub/{artefact}.log",
    benchmark:
        "benchmarks/fetch_hub/{artefact}.tsv"
    wildcard_constraints:
        artefact="|".join(map(re.escape, HUB_ARTEFACTS)) or "no-hub-artefact",
    conda:
        "../../envs/fetch.yaml"
    # The artefact alone: download settings changing never refetch.
    params:
        artefact=lambda wc: dataclasses.asdict(HUB_ARTEFACTS[wc.artefact]),
    script:
        "../scripts/fetch_hub.py"


# Only configured GloVe files that are not on disk: a user's own files are never outputs of a rule.
if GLOVE_DOWNLOADS:

    rule fetch_glove:
        output:
            files=list(GLOVE_DOWNLOADS),
            record=f"{FETCH_RECORDS}/glove.6B.zip.json",
        log:
            "logs/fetch_glove.log",
        benchmark:
            "benchmarks/fetch_glove.tsv"
        conda:
            "../../envs/fetch.yaml"
        params:
            files=GLOVE_DOWNLOADS,
        script:
            "../scripts/fetch_glove.py"
