import pandas as pd

from saerand.atomic import atomic_directory, write_text
from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.toy.plots import MEASURE_LABELS, figure5, pareto_figure

start_job(snakemake.log[0], snakemake.threads)
dataset = snakemake.params.dataset
table = pd.concat([pd.read_csv(path) for path in snakemake.input], ignore_index=True)
record = provenance(dataset=dataset, tables=list(snakemake.input))
with atomic_directory(snakemake.output.figures) as figures:
    # One figure per sparsity measure (superposition: Figures 6, 13, 14, 16; GloVe 300-d: Figure 7
    # for l1_over_sqrt_l2) and all measures together (Figures 17-20).
    for measure in MEASURE_LABELS:
        pareto_figure(table, measure, figures / f"pareto_{measure}.png", record)
    pareto_figure(table, list(MEASURE_LABELS), figures / "pareto_all.png", record)
    if "mmcs" in table and table["mmcs"].notna().any():  # Figure 5: ground truth is known
        figure5(table[table["kind"] == "inputs"], figures / "mmcs.png", record)
write_text(snakemake.output.table, table.to_csv(index=False))
summary = ["one_minus_nre", "explained_variance", "l0", "l1_over_sqrt_l2"]
print(table.groupby(["kind", "n_latents"])[summary].describe().to_string())
