from saerand.atomic import write_text
from saerand.autointerp.report import examples_table, roc_figure
from saerand.config import SaeTarget
from saerand.jobs import start_job
from saerand.provenance import provenance

start_job(snakemake.log[0], snakemake.threads)
params, wildcards, output = snakemake.params, snakemake.wildcards, snakemake.output
saes = [SaeTarget(*sae) for sae in params.saes]
roc_figure(
    saes,
    wildcards.explainer,
    "fuzz",
    output.roc,
    provenance(sources=list(snakemake.input), explainer=wildcards.explainer, scorer="fuzz"),
)
write_text(output.examples, examples_table(saes, wildcards.explainer, params.per_sae).to_csv(index=False))
