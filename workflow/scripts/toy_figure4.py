from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.toy.mlp import lomax_through_mlp
from saerand.toy.plots import figure4

start_job(snakemake.log[0], snakemake.threads)
lomax = snakemake.params.lomax
figure4(
    lomax_through_mlp(lomax["n_samples"], seed=lomax["seed"]),
    snakemake.output[0],
    provenance(lomax=lomax, seed=lomax["seed"]),
)
