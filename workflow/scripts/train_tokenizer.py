from saerand.atomic import atomic_directory, write_json
from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.tiny_model import train_tokenizer

start_job(snakemake.log[0], snakemake.threads)
params = snakemake.params
tokenizer = train_tokenizer([snakemake.input.train], params.vocab_size, params.context_length)
with atomic_directory(snakemake.output[0]) as staging:
    tokenizer.save_pretrained(staging)
    write_json(staging / "provenance.json", provenance(vocab_size=params.vocab_size, corpus=snakemake.input.train))
print(f"vocabulary: {len(tokenizer)} tokens")
