import pandas as pd

from saerand.aggregate import sweep_study
from saerand.jobs import start_job
from saerand.plots import figure11
from saerand.provenance import provenance

start_job(snakemake.log[0], snakemake.threads)
sweep = sweep_study(pd.read_csv(snakemake.input.table), snakemake.config)
figure11(sweep, snakemake.output[0], provenance(table=snakemake.input.table, sweep=snakemake.config["sweep"]))
print(sweep.to_string())
