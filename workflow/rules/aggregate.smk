# Aggregation: every SAE's metrics in one tidy table, the Figure 3-style plot and, when the
# config has a sweep, the Figure 11-style plot.


rule aggregate_metrics:
    input:
        [f"{target.directory}/metrics.json" for target in SAE_TARGETS],
    output:
        table="results/metrics.csv",
        provenance="results/metrics.provenance.json",
        figure="results/figures/sae_metrics.png",
    log:
        "logs/aggregate_metrics.log",
    benchmark:
        "benchmarks/aggregate_metrics.tsv"
    conda:
        "../../envs/aggregate.yaml"
    script:
        "../scripts/aggregate_metrics.py"


rule plot_hyperparameter_sweep:
    input:
        table="results/metrics.csv",
    output:
        "results/figures/hyperparameter_sweep.png",
    log:
        "logs/plot_hyperparameter_sweep.log",
    benchmark:
        "benchmarks/plot_hyperparameter_sweep.tsv"
    conda:
        "../../envs/aggregate.yaml"
    script:
        "../scripts/plot_hyperparameter_sweep.py"
