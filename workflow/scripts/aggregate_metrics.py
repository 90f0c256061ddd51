from saerand.aggregate import main_study, metrics_table
from saerand.atomic import write_json, write_text
from saerand.jobs import start_job
from saerand.plots import figure3
from saerand.provenance import provenance

start_job(snakemake.log[0], snakemake.threads)
table = metrics_table(snakemake.input)
output = snakemake.output
record = provenance(sources=list(snakemake.input), config=snakemake.config)
write_text(output.table, table.to_csv(index=False))
write_json(output.provenance, record)
figure3(main_study(table, snakemake.config), output.figure, provenance(table=output.table))
print(table.to_string())
