from saerand.cache import ActivationCache
from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.reruns import with_operational
from saerand.sae_training import buffer_order_seed, job_settings, save_layer_checkpoint, train_layer_shard
from saerand.settings import study_settings
from saerand.study import sae_hyperparameters

start_job(snakemake.log[0], snakemake.threads, snakemake.resources)
params, wildcards = snakemake.params, snakemake.wildcards
layer, shard = int(wildcards.layer), int(wildcards.shard)
settings = job_settings(with_operational(params.sae, snakemake.config["sae"]))
cache = ActivationCache(snakemake.input.shard)
# Every SAE of the layer, from the config rather than a param: a sweep point dropped from the config
# must not rerun the other SAEs' chains (a changed param would, even where they are finished).
study = study_settings(snakemake.config)
points = sorted(sae_hyperparameters(study, wildcards.model, layer))
tracking = study.tracking
trainers = train_layer_shard(
    cache,
    layer,
    shard,
    settings,
    points,
    params.context_length,
    params.train_tokens,
    previous=snakemake.input.previous or None,
    chain=(wildcards.model, wildcards.variant),
    tensorboard=tracking.directory if tracking.tensorboard else None,
)
save_layer_checkpoint(
    snakemake.output[0],
    trainers,
    provenance(
        model=wildcards.model,
        variant=wildcards.variant,
        layer=layer,
        shard=shard,
        seed=params.sae["seed"],
        cache=cache.attrs,
        buffer_order_seed=buffer_order_seed(settings, shard),
    ),
)
