# The latent browser (Section 3.3): per (model, explainer), static pages of every auto-interpreted
# SAE's sampled latents, their scores and the examples they were scored on, and per layer the
# trained variant's latents beside each random variant's (saerand.browser).


rule latent_browser:
    input:
        model_files,
        scores=lambda wc: [
            t.autointerp_directory(wc.explainer) for t in AUTOINTERP_STUDY_TARGETS if t.model == wc.model
        ],
        latents=lambda wc: sorted(
            {latents_directory(t.model, t.variant) for t in AUTOINTERP_STUDY_TARGETS if t.model == wc.model}
        ),
    output:
        report(
            directory(BROWSER),
            htmlindex="index.html",
            caption="../report/latent_browser.rst",
            category=SECTION33,
            subcategory="{model}",
            labels={"item": "latent browser", "explainer": "{explainer}"},
        ),
    log:
        "logs/latent_browser/{model}_{explainer}.log",
    benchmark:
        "benchmarks/latent_browser/{model}_{explainer}.tsv"
    conda:
        "../../envs/autointerp.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        saes=lambda wc: [list(t) for t in AUTOINTERP_STUDY_TARGETS if t.model == wc.model],
        top=5,
        per_quantile=2,
        model=model_settings,
        autointerp=LATENT_SETTINGS,
    script:
        "../scripts/latent_browser.py"
