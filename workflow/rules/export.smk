# Each SAE in SAELens's format beside its sparsify folder (saerand.saelens_export): SAELens's
# `SAE.load_from_disk` loads it, with the hook of the residual stream it was trained on named as
# TransformerLens names it (blocks.{layer}.hook_resid_post).


rule export_saelens:
    input:
        f"{SAE_DIR}/sae",
    output:
        directory(f"{SAE_DIR}/saelens"),
    log:
        "logs/export_saelens/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.log",
    benchmark:
        "benchmarks/export_saelens/{model}/{variant}/x{expansion}-k{k}/layers.{layer}.tsv"
    conda:
        "../../envs/saelens.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        # What TransformerLens loads: a hub model's id; a local or embedded model has only its name.
        model_name=lambda wildcards: config["models"][wildcards.model].get("hub_id") or wildcards.model,
        context_size=config["tokens"]["context_length"],
    script:
        "../scripts/export_saelens.py"
