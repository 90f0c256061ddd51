# Auto-interpretability (Section 3.3): per (model, variant), one pass of the subject model over
# held-out text stores the sampled latents of every layer's SAE in delphi's format; per SAE, the
# latents are explained and scored with delphi's fuzzing and detection samples. The null explainer
# (token identity, no LLM) runs everywhere; it is the control the paper lacks.


rule collect_latents:
    input:
        model_files,
        tokens="results/{model}/tokens/autointerp.zarr",
        saes=autointerp_saes,
    output:
        directory("results/{model}/{variant}/autointerp/latents"),
    params:
        model=model_settings,
        layers=autointerp_layers,
        autointerp=AUTOINTERP,
        variant_seed=config["variant_seed"],
    threads: 2
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
        cpus_per_task=cluster_step_cpus,
    log:
        "logs/collect_latents/{model}/{variant}.log",
    benchmark:
        "benchmarks/collect_latents/{model}/{variant}.tsv"
    conda:
        "../../envs/autointerp.yaml"
    script:
        "../scripts/collect_latents.py"


rule autointerp_tokens:
    input:
        model_files,
        latents="results/{model}/{variant}/autointerp/latents",
    output:
        directory(f"{SAE_DIR}/autointerp/tokens"),
    # The latents were collected with the study's own SAE of each layer; a sweep SAE has none.
    wildcard_constraints:
        expansion=str(STUDY_HYPERPARAMETERS["expansion_factor"]),
        k=str(STUDY_HYPERPARAMETERS["k"]),
    params:
        model=model_settings,
        autointerp=AUTOINTERP,
    threads: 1
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    log:
        "logs/autointerp_tokens/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        "benchmarks/autointerp_tokens/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv"
    conda:
        "../../envs/autointerp.yaml"
    script:
        "../scripts/autointerp_tokens.py"


rule autointerp_figures:
    input:
        lambda wc: [f"{t.directory}/autointerp/{wc.explainer}" for t in AUTOINTERP_TARGETS if t.model == wc.model],
    output:
        roc="results/figures/roc_{model}_{explainer}.png",
        examples="results/autointerp/examples_{model}_{explainer}.csv",
    params:
        saes=lambda wc: [list(t) for t in AUTOINTERP_TARGETS if t.model == wc.model],
        per_sae=5,
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    log:
        "logs/autointerp_figures/{model}_{explainer}.log",
    benchmark:
        "benchmarks/autointerp_figures/{model}_{explainer}.tsv"
    conda:
        "../../envs/autointerp.yaml"
    script:
        "../scripts/autointerp_figures.py"
