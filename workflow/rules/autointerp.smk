# Auto-interpretability (Section 3.3): per (model, variant), one pass of the subject model over
# held-out text stores the sampled latents of every layer's SAE in delphi's format; per SAE, the
# latents are explained and scored with delphi's fuzzing and detection samples. The null explainer
# (token identity, no LLM) runs everywhere; it is the control the paper lacks. The LLM explainer
# (the paper's) runs as a job group: one vLLM server (a service job) and the SAEs it serves.


rule collect_latents:
    input:
        model_files,
        tokens="results/{model}/tokens/autointerp.zarr",
        saes=autointerp_saes,
    output:
        directory("results/{model}/{variant}/autointerp/latents"),
    log:
        "logs/collect_latents/{model}/{variant}.log",
    benchmark:
        BENCHMARKS["collect_latents"]
    conda:
        "../../envs/autointerp.yaml"
    # One thread where the profile sets none (profiles/slurm gives GPU jobs their CPUs): at two, a
    # job waits for both cores of a workstation and then keeps about one busy (measured on the demo).
    threads: 1
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
        cpus_per_task=cluster_step_cpus,
        gpu=1,
        nodes=1,
        constraint=gpu_constraint,
        time_exhausted=job_time_exhausted,
    params:
        model=model_settings,
        modules=autointerp_modules,
        autointerp=LATENT_SETTINGS,
        variant_seed=config["variant_seed"],
    script:
        "../scripts/collect_latents.py"


rule autointerp_tokens:
    input:
        model_files,
        latents="results/{model}/{variant}/autointerp/latents",
    output:
        directory(f"{SAE_DIR}/autointerp/tokens"),
    log:
        "logs/autointerp_tokens/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        "benchmarks/autointerp_tokens/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv"
    # Latents were collected for the study's own SAEs, and with autointerp.sweep the sweep's.
    wildcard_constraints:
        expansion=AUTOINTERP_EXPANSIONS,
        k=AUTOINTERP_KS,
    group:
        TOKENS_GROUP
    conda:
        "../../envs/autointerp.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        model=model_settings,
        autointerp=LATENT_SETTINGS,
    script:
        "../scripts/autointerp_sae.py"


# The server: it writes where its socket is, then becomes vLLM (exec), so the SIGTERM Snakemake
# sends when the group's SAEs are done stops it. It lives in vLLM's own environment. Each server
# serves a batch of autointerp.llm.saes_per_server SAEs; with them it makes one job group (on Slurm,
# one cluster job).
rule llm_server:
    input:
        weights=fetched(llm_artefact(config)),
    output:
        service("results/autointerp/servers/llm-{batch}.json"),
    log:
        "logs/llm_server/llm-{batch}.log",
    benchmark:
        "benchmarks/llm_server/llm-{batch}.tsv"
    group:
        LLM_GROUP
    conda:
        "../../envs/vllm.yaml"
    threads: LLM.cpus
    # One node: vLLM's tensor parallelism runs in the job step on one node.
    resources:
        gpu=LLM.gpus,
        nodes=1,
        constraint=llm_constraint,
        mem_mb=LLM.mem_mb,
        runtime=job_runtime,
    params:
        python=LLM.python,
        settings=lambda wildcards: json.dumps(AUTOINTERP_LLM),
        src=SOURCE_DIRECTORY,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m saerand.autointerp.serve {output:q} {params.settings:q}"
        " {log:q} {input.weights:q} > {log:q} 2>&1"


use rule autointerp_tokens as autointerp_llm with:
    input:
        model_files,
        latents="results/{model}/{variant}/autointerp/latents",
        server=lambda wildcards: f"results/autointerp/servers/llm-{llm_batch(wildcards)}.json",
    # Write-protected once finished: hours of a 70B LLM per SAE.
    output:
        protected(directory(f"{SAE_DIR}/autointerp/llm")),
    log:
        "logs/autointerp_llm/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        BENCHMARKS["autointerp_llm"]
    group:
        LLM_GROUP
    # Clients waiting on the server's answers: the group's cores are the server's, so it plans with
    # any --cores (a plain dry run has 1).
    threads: 0
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
        constraint=llm_constraint,
    params:
        model=model_settings,
        autointerp={**LATENT_SETTINGS, "llm": result_defining("autointerp.llm", AUTOINTERP_LLM)},


rule autointerp_figures:
    input:
        model_files,
        scores=lambda wc: [
            f"{t.directory}/autointerp/{wc.explainer}" for t in AUTOINTERP_STUDY_TARGETS if t.model == wc.model
        ],
        # Appendix D's top activating examples come from the latent caches the SAEs were scored on.
        latents=lambda wc: sorted(
            {
                f"results/{t.model}/{t.variant}/autointerp/latents"
                for t in AUTOINTERP_STUDY_TARGETS
                if t.model == wc.model
            }
        ),
    output:
        roc=report(
            "results/figures/roc_{model}_{explainer}.png",
            caption="../report/roc.rst",
            category=SECTION33,
            subcategory="{model}",
            labels={"item": "ROC curves", "explainer": "{explainer}"},
        ),
        examples=report(
            "results/autointerp/examples_{model}_{explainer}.csv",
            caption="../report/examples.rst",
            category=SECTION33,
            subcategory="{model}",
            labels={"item": "latent examples", "explainer": "{explainer}"},
        ),
        appendix_d=report(
            "results/figures/appendix_d_{model}_{explainer}.png",
            caption="../report/appendix_d.rst",
            category=SECTION33,
            subcategory="{model}",
            labels={"item": "Appendix D", "explainer": "{explainer}"},
        ),
    log:
        "logs/autointerp_figures/{model}_{explainer}.log",
    benchmark:
        "benchmarks/autointerp_figures/{model}_{explainer}.tsv"
    conda:
        "../../envs/autointerp.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        deviations=DEVIATIONS,
        saes=lambda wc: [list(t) for t in AUTOINTERP_STUDY_TARGETS if t.model == wc.model],
        per_sae=5,
        model=model_settings,
        autointerp=LATENT_SETTINGS,
    script:
        "../scripts/autointerp_figures.py"
