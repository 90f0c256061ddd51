# Aggregation: every SAE's metrics in one tidy table, the Figure 3-style plot and, when the
# config has a sweep, the Figure 11-style plot.
#
# The set of SAEs and every setting the aggregation and plots use are params, as plain data: the
# profiles leave the `input` rerun trigger off (profiles/default/config.yaml), so a shrunk set of
# inputs alone would rerun nothing and leave the dropped SAEs' rows in the table; a changed param
# does rerun the job.

from saerand.study import main_hyperparameters, sweep_layers

# [model, variant, layer, expansion, k] of every SAE of the study, sorted.
AGGREGATED_SAES = sorted([list(target) for target in SAE_TARGETS])
STUDY_HYPERPARAMETERS = dict(main_hyperparameters(SETTINGS)._asdict())
# Figure 11's selection: each swept model's layers, the grid.
SWEEP_SELECTION = (
    {
        "layers": {model: sweep_layers(SETTINGS, model) for model in sorted(SETTINGS.sweep.models)},
        "expansion_factors": sorted(SETTINGS.sweep.expansion_factors),
        "k": sorted(SETTINGS.sweep.k),
    }
    if SETTINGS.sweep
    else None
)


rule aggregate_metrics:
    input:
        metrics=[f"{SaeTarget(*sae).directory}/metrics.json" for sae in AGGREGATED_SAES],
        autointerp=(
            [t.autointerp_directory(e) for t in AUTOINTERP_TARGETS for e in AUTOINTERP["explainers"]]
            if AUTOINTERP
            else []
        ),
    output:
        table=report(
            METRICS_TABLE,
            caption="../report/metrics_table.rst",
            category=SECTION3,
            subcategory="Tables",
            labels={"item": "metrics of every SAE"},
        ),
        provenance=report(
            METRICS_PROVENANCE,
            caption="../report/provenance.rst",
            category=SECTION3,
            subcategory="Tables",
            labels={"item": "provenance of the metrics table"},
        ),
        figure=report(
            SAE_METRICS_FIGURE,
            caption="../report/figure3.rst",
            category=SECTION3,
            subcategory="Figures",
            labels={"item": "Figure 3"},
        ),
    log:
        "logs/aggregate_metrics.log",
    benchmark:
        "benchmarks/aggregate_metrics.tsv"
    conda:
        "../../envs/aggregate.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        deviations=DEVIATIONS,
        saes=AGGREGATED_SAES,
        autointerp_saes=[list(t) for t in AUTOINTERP_TARGETS],
        explainers=AUTOINTERP["explainers"] if AUTOINTERP else [],
        study=STUDY_HYPERPARAMETERS,
        reading=config["evaluation"]["figure_reading"],
    script:
        "../scripts/aggregate_metrics.py"


rule plot_hyperparameter_sweep:
    input:
        table=METRICS_TABLE,
    output:
        report(
            SWEEP_FIGURE,
            caption="../report/figure11.rst",
            category=SECTION3,
            subcategory="Figures",
            labels={"item": "Figure 11"},
        ),
    log:
        "logs/plot_hyperparameter_sweep.log",
    benchmark:
        "benchmarks/plot_hyperparameter_sweep.tsv"
    conda:
        "../../envs/aggregate.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        deviations=DEVIATIONS,
        sweep=SWEEP_SELECTION,
        reading=config["evaluation"]["figure_reading"],
    script:
        "../scripts/plot_hyperparameter_sweep.py"


# The paper's claims as numbers (saerand.claims): on the study's own SAEs, the sweep's (Figure 11's
# ordering) and the superposition toy study's (saerand.toy.claims).
CLAIM_SAES = [list(t) for t in SAE_TARGETS]
CLAIM_TOY_DATASETS = [name for name in TOY_DATASETS if name == SUPERPOSITION]


rule claims:
    input:
        metrics=[f"{SaeTarget(*sae).directory}/metrics.json" for sae in CLAIM_SAES],
        toy=[TOY_METRICS.format(toy_dataset=name) for name in CLAIM_TOY_DATASETS],
        autointerp=(
            [t.autointerp_directory(e) for t in AUTOINTERP_STUDY_TARGETS for e in AUTOINTERP["explainers"]]
            if AUTOINTERP
            else []
        ),
    output:
        table=report(
            CLAIMS_TABLE,
            caption="../report/claims.rst",
            category=CLAIMS,
            labels={"item": "the paper's claims"},
        ),
        provenance=CLAIMS_PROVENANCE,
    log:
        "logs/claims.log",
    benchmark:
        "benchmarks/claims.tsv"
    conda:
        "../../envs/aggregate.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        saes=CLAIM_SAES,
        autointerp_saes=[list(t) for t in AUTOINTERP_STUDY_TARGETS],
        explainers=AUTOINTERP["explainers"] if AUTOINTERP else [],
        margins=config["evaluation"]["similarity_margins"],
        reading=config["evaluation"]["figure_reading"],
        point=list(main_hyperparameters(SETTINGS)),
        parameters={model: COSTS.size(model).params() for model in config["models"]},
        toy_datasets=CLAIM_TOY_DATASETS,
        resamples=config["evaluation"]["bootstrap_resamples"],
    script:
        "../scripts/claims.py"


# Each SAE's training curve (training_curve.csv beside it), one figure per model: the study's own SAEs.
rule training_curves:
    input:
        lambda wildcards: [f"{SaeTarget(*sae).directory}/sae" for sae in curve_saes(wildcards.model)],
    output:
        report(
            TRAINING_CURVES_FIGURE,
            caption="../report/training_curves.rst",
            category=SECTION3,
            subcategory="Figures",
            labels={"item": "training curves {model}"},
        ),
    log:
        "logs/training_curves/{model}.log",
    benchmark:
        "benchmarks/training_curves/{model}.tsv"
    conda:
        "../../envs/aggregate.yaml"
    resources:
        mem_mb=job_mem_mb,
        runtime=job_runtime,
    params:
        model=lambda wildcards: wildcards.model,
        saes=lambda wildcards: curve_saes(wildcards.model),
    script:
        "../scripts/training_curves.py"
