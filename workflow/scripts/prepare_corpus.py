from saerand.atomic import write_json
from saerand.corpus import kjv_chapters, write_split_corpus
from saerand.jobs import start_job
from saerand.provenance import provenance

start_job(snakemake.log[0], snakemake.threads)
corpus = snakemake.params.corpus
counts = write_split_corpus(kjv_chapters(), corpus["holdout_books"], snakemake.output.train, snakemake.output.eval)
print(counts)
write_json(snakemake.output.provenance, provenance(corpus=corpus, **counts))
