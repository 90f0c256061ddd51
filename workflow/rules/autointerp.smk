# Auto-interpretability (Section 3.3): per (model, variant), one pass of the subject model over
# held-out text stores the sampled latents of every layer's SAE in delphi's format; per SAE, the
# latents are explained and scored with delphi's fuzzing and detection samples. The null explainer
# (token identity, no LLM) runs everywhere; it is the control the paper lacks. The LLM explainer
# (the paper's) runs as a job group: one vLLM server (a service job) and the SAEs it serves.


rule collect_latents:
    input:
        model_files,
        tokens=tokens_store("{model}", "autointerp"),
        saes=autointerp_saes,
    output:
        directory(LATENTS),
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


# One SAE explained and scored by an explainer without an LLM (saerand.autointerp.explainers), in
# a CPU job; batches of them form one cluster job per (model, variant).
rule autointerp_cpu:
    input:
        model_files,
        latents=LATENTS,
    output:
        directory(AUTOINTERP_DIR),
    log:
        "logs/autointerp_{explainer}/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        "benchmarks/autointerp_{explainer}/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv"
    # Latents were collected for the study's own SAEs, and with autointerp.sweep the sweep's.
    wildcard_constraints:
        expansion=AUTOINTERP_EXPANSIONS,
        k=AUTOINTERP_KS,
        explainer="|".join(OFFLINE_EXPLAINERS),
    group:
        CPU_AUTOINTERP_GROUP
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
        service(LLM_SERVER),
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


# One SAE explained and scored through the served LLM, in its server's job group.
use rule autointerp_cpu as autointerp_llm with:
    input:
        model_files,
        latents=LATENTS,
        server=lambda wildcards: LLM_SERVER.format(batch=llm_batch(wildcards)),
    # Write-protected once finished: hours of a 70B LLM per SAE.
    output:
        protected(directory(AUTOINTERP_DIR)),
    log:
        "logs/autointerp_{explainer}/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        BENCHMARKS["autointerp_llm"]
    wildcard_constraints:
        expansion=AUTOINTERP_EXPANSIONS,
        k=AUTOINTERP_KS,
        explainer="|".join(SERVED_EXPLAINERS),
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
            t.autointerp_directory(wc.explainer) for t in AUTOINTERP_STUDY_TARGETS if t.model == wc.model
        ],
        # Appendix D's top activating examples come from the latent caches the SAEs were scored on.
        latents=lambda wc: sorted(
            {latents_directory(t.model, t.variant) for t in AUTOINTERP_STUDY_TARGETS if t.model == wc.model}
        ),
    output:
        roc=report(
            ROC_FIGURE,
            caption="../report/roc.rst",
            category=SECTION33,
            subcategory="{model}",
            labels={"item": "ROC curves", "explainer": "{explainer}"},
        ),
        examples=report(
            EXAMPLES_TABLE,
            caption="../report/examples.rst",
            category=SECTION33,
            subcategory="{model}",
            labels={"item": "latent examples", "explainer": "{explainer}"},
        ),
        appendix_d=report(
            APPENDIX_D_FIGURE,
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
