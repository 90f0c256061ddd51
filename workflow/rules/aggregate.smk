# Aggregation: every SAE's metrics in one tidy table and the Figure 3-style plot.


rule aggregate_metrics:
    input:
        expand(
            "results/{target[0]}/{target[1]}/layers.{target[2]}/metrics.json",
            target=SAE_TARGETS,
        ),
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
