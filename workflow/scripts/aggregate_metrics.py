from saerand.aggregate import KEY_COLUMNS, autointerp_columns, main_study, study_table
from saerand.atomic import write_json, write_text
from saerand.jobs import start_job
from saerand.plots import figure3
from saerand.provenance import provenance
from saerand.study import SaeTarget

start_job(snakemake.log[0], snakemake.threads)
params, output = snakemake.params, snakemake.output
saes = [SaeTarget(*sae) for sae in params.saes]
table = study_table(saes, list(snakemake.input.metrics))
if params.explainers:
    autointerp = autointerp_columns([SaeTarget(*sae) for sae in params.autointerp_saes], params.explainers)
    table = table.merge(autointerp, on=KEY_COLUMNS, how="left")
record = provenance(sources=list(snakemake.input), saes=params.saes, study=dict(params.study))
write_text(output.table, table.to_csv(index=False))
write_json(output.provenance, record)
figure3(
    main_study(table, **params.study),
    output.figure,
    provenance(table=output.table, study=dict(params.study), reading=params.reading),
    params.reading,
)
print(table.to_string())
