import math

from saerand.cache import ActivationCache
from saerand.jobs import start_job
from saerand.models import resolve_device
from saerand.provenance import provenance
from saerand.sae_training import SaeTrainer, batch_rows, buffer_order_seed, training_batches

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
layer, shard = int(wildcards.layer), int(wildcards.shard)
settings = {**params.sae, "device": resolve_device(params.sae["device"])}
rows = batch_rows(settings, params.context_length)
cache = ActivationCache(snakemake.input.shard)
if snakemake.input.previous:
    trainer = SaeTrainer.from_checkpoint(snakemake.input.previous, settings)
else:
    trainer = SaeTrainer(cache.d_model, settings, num_steps=math.ceil(params.train_tokens / rows))
trainer.train_on(training_batches(cache, layer, settings, params.context_length, shard),
                 description=f"SAE layers.{layer} shard {shard}")
trainer.save_checkpoint(snakemake.output[0], provenance(
    model=wildcards.model, variant=wildcards.variant, layer=layer, shard=shard,
    sae_config=params.sae, seed=params.sae["seed"], cache=cache.attrs,
    buffer_order_seed=buffer_order_seed(settings, shard),
))
