from saerand.atomic import write_json, write_text
from saerand.claims import claims_table, replicates_of
from saerand.config import SaeTarget
from saerand.jobs import start_job
from saerand.plots import READINGS
from saerand.provenance import provenance

start_job(snakemake.log[0], snakemake.threads)
params, output = snakemake.params, snakemake.output
saes = [SaeTarget(*sae) for sae in params.saes]
interpreted = {SaeTarget(*sae) for sae in params.autointerp_saes}
results = {sae: replicates_of(sae, params.explainers if sae in interpreted else []) for sae in saes}
# EV and cosine in the figures' reading; the fuzzing AUROC of each explainer.
metrics = dict(READINGS[params.reading]) | {f"fuzz_auroc_{e}": f"fuzz_auroc_{e}" for e in params.explainers}
table = claims_table(results, metrics, params.margins)
write_text(output.table, table.to_csv(index=False))
write_json(
    output.provenance,
    provenance(
        sources=list(snakemake.input),
        saes=params.saes,
        margins=dict(params.margins),
        reading=params.reading,
        explainers=list(params.explainers),
    ),
)
print(table.to_string())
