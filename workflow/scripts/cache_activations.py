from saerand.cache import write_activation_cache
from saerand.data import load_token_store
from saerand.jobs import start_job
from saerand.models import resolve_device
from saerand.provenance import provenance
from saerand.variants import load_variant

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
model, cache = params.model, params.cache
start, stop = params.sequences or (0, None)
sequences = load_token_store(snakemake.input.tokens, start, stop)
device = resolve_device(cache["device"])
subject, variant_record = load_variant(
    model["location"], model, wildcards.variant, seed=params.variant_seed, device=device, **params.store
)
write_activation_cache(
    snakemake.output[0],
    subject,
    sequences,
    params.layers,
    batch_sequences=cache["batch_sequences"],
    dtype=cache["dtype"],
    chunk_rows=cache["chunk_rows"],
    compressor=cache["compressor"],
    attrs=provenance(
        model=wildcards.model,
        model_config=model,
        token_store=snakemake.input.tokens,
        sequences=[start, start + len(sequences)],
        **variant_record,
    ),
)
