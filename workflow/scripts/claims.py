import pandas as pd

from saerand.atomic import write_json, write_text
from saerand.claims import claims_table, replicates_of
from saerand.jobs import start_job
from saerand.plots import READINGS
from saerand.provenance import provenance
from saerand.study import SaeHyperparameters, SaeTarget
from saerand.toy.claims import toy_claims

start_job(snakemake.log[0], snakemake.threads)
params, output = snakemake.params, snakemake.output
saes = [SaeTarget(*sae) for sae in params.saes]
interpreted = {SaeTarget(*sae) for sae in params.autointerp_saes}
results = {sae: replicates_of(sae, params.explainers if sae in interpreted else []) for sae in saes}
# EV and cosine in the figures' reading; the fuzzing AUROC of each explainer.
metrics = dict(READINGS[params.reading]) | {f"fuzz_auroc_{e}": f"fuzz_auroc_{e}" for e in params.explainers}
toy_rows = [
    claim
    for name, path in zip(params.toy_datasets, snakemake.input.toy)
    for claim in toy_claims(pd.read_csv(path), name, resamples=params.resamples)
]
table = claims_table(
    results,
    metrics,
    params.margins,
    point=SaeHyperparameters(*params.point),
    parameters=params.parameters,
    toy_rows=toy_rows,
)
write_text(output.table, table.to_csv(index=False))
write_json(
    output.provenance,
    provenance(
        sources=list(snakemake.input),
        saes=params.saes,
        margins=dict(params.margins),
        reading=params.reading,
        explainers=list(params.explainers),
        point=params.point,
        parameters=dict(params.parameters),
    ),
)
print(table.to_string())
