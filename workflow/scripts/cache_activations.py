from saerand.cache import write_activation_cache
from saerand.data import token_sequences
from saerand.jobs import start_job
from saerand.models import load_tokenizer, resolve_device
from saerand.provenance import provenance
from saerand.variants import load_variant

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
model, cache = params.model, params.cache
device = resolve_device(cache["device"])
subject, variant_record = load_variant(
    model["location"], model, wildcards.variant, seed=params.variant_seed, device=device
)
# The trained revision's tokenizer serves every variant (step0 shares it).
tokenizer = load_tokenizer(model["location"], model["revision"])
sequences = token_sequences(params.dataset, tokenizer, params.context_length, params.n_tokens)
write_activation_cache(
    snakemake.output[0], subject, sequences, params.layers,
    batch_sequences=cache["batch_sequences"], dtype=cache["dtype"],
    chunk_rows=cache["chunk_rows"], compressor=cache["compressor"],
    attrs=provenance(model=wildcards.model, model_config=model, split=wildcards.split,
                     dataset=params.dataset, **variant_record),
)
