from saerand.data import token_sequences
from saerand.jobs import start_job
from saerand.models import load_tokenizer
from saerand.provenance import provenance
from saerand.token_store import save_token_store

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
# The trained revision's tokenizer serves every variant (step0 shares it).
tokenizer = load_tokenizer(params.model["location"], params.model["revision"])
text = params.text
sequences = token_sequences(
    text["dataset"],
    tokenizer,
    params.context_length,
    text["n_tokens"],
    skip_tokens=text["skip_tokens"],
    shuffle_seed=text["shuffle_seed"],
)
if text["window"]:
    sequences = sequences.reshape(-1, text["window"])
save_token_store(
    snakemake.output[0],
    sequences,
    provenance(
        model=wildcards.model,
        split=wildcards.split,
        text=text,
        tokenizer=f"{params.model['location']}@{params.model['revision']}",
    ),
)
print(f"{sequences.shape[0]} sequences of {sequences.shape[1]} tokens")
