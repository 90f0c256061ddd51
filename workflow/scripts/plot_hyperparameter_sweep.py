import pandas as pd

from saerand.aggregate import sweep_study
from saerand.jobs import start_job
from saerand.plots import figure11
from saerand.provenance import provenance

start_job(snakemake.log[0], snakemake.threads)
selection = snakemake.params.sweep
if not selection:
    raise ValueError("the config has no sweep section: there is no hyperparameter sweep to plot")
sweep = sweep_study(pd.read_csv(snakemake.input.table), **selection)
if sweep.empty:
    raise ValueError(f"no SAE of the sweep {selection} in {snakemake.input.table}")
reading = snakemake.params.reading
figure11(
    sweep, snakemake.output[0], provenance(table=snakemake.input.table, sweep=dict(selection), reading=reading), reading
)
print(sweep.to_string())
