from saerand.cache import write_activation_cache
from saerand.devices import resolve_device
from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.settings import CacheSettings, job_section
from saerand.token_store import load_token_store
from saerand.variants import load_variant

start_job(snakemake.log[0], snakemake.threads, snakemake.resources)
params, wildcards = snakemake.params, snakemake.wildcards
model_settings = params.model
cache_settings = job_section(CacheSettings, "cache", params.cache, snakemake.config)
start, stop = params.sequences or (0, None)
sequences = load_token_store(snakemake.input.tokens, start, stop)
device = resolve_device(cache_settings.device)
subject, variant_record = load_variant(
    model_settings["location"],
    model_settings,
    wildcards.variant,
    seed=params.variant_seed,
    device=device,
    **params.store,
)
write_activation_cache(
    snakemake.output[0],
    subject,
    sequences,
    params.layers,
    batch_sequences=cache_settings.batch_sequences,
    dtype=cache_settings.dtype,
    chunk_rows=cache_settings.chunk_rows,
    compressor=cache_settings.compressor,
    attrs=provenance(
        model=wildcards.model,
        model_config=model_settings,
        token_store=snakemake.input.tokens,
        sequences=[start, start + len(sequences)],
        **variant_record,
    ),
)
