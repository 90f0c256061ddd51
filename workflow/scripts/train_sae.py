from saerand.cache import ActivationCache
from saerand.jobs import start_job
from saerand.models import resolve_device
from saerand.provenance import provenance
from saerand.sae_training import save_sae, train_sae

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
cache = ActivationCache(snakemake.input.cache)
settings = {**params.sae, "device": resolve_device(params.sae["device"])}
sae, summary = train_sae(cache, int(wildcards.layer), settings, params.context_length)
print(summary)
save_sae(sae, snakemake.output[0], provenance(
    model=wildcards.model, variant=wildcards.variant, layer=int(wildcards.layer),
    sae_config=params.sae, seed=params.sae["seed"], training=summary, cache=cache.attrs,
))
