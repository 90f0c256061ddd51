from sparsify import SparseCoder

from saerand.autointerp.latents import write_latent_cache
from saerand.data import load_token_store
from saerand.jobs import start_job
from saerand.models import resolve_device
from saerand.provenance import provenance
from saerand.variants import load_variant

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
model_settings, autointerp_settings = params.model, params.autointerp
device = resolve_device(autointerp_settings["device"])
sequences = load_token_store(snakemake.input.tokens)
subject, variant_record = load_variant(
    model_settings["location"],
    model_settings,
    wildcards.variant,
    seed=params.variant_seed,
    device=device,
    split="autointerp",
)
saes = {
    module: (layer, SparseCoder.load_from_disk(path, device=device))
    for (module, layer), path in zip(params.modules, snakemake.input.saes)
}
# delphi's raw directory inside the output, where Snakemake's own timestamp file does not land.
selections = write_latent_cache(
    f"{snakemake.output[0]}/delphi",
    subject,
    sequences,
    saes,
    autointerp_settings,
    provenance(
        # What delphi's LatentDataset reads (CacheConfig fields and the tokenizer's location), and ours.
        model_name=model_settings["location"],
        cache_ctx_len=int(sequences.shape[1]),
        n_tokens=int(sequences.size),
        dataset_repo=snakemake.input.tokens,
        model=wildcards.model,
        autointerp=autointerp_settings,
        saes={module: path for (module, _), path in zip(params.modules, snakemake.input.saes)},
        **variant_record,
    ),
)
for module, selection in selections.items():
    print(
        f"{module}: {len(selection.selected)} latents kept of {selection.drawn} drawn "
        f"({selection.dead} dead, {selection.too_rare} with fewer than {autointerp_settings['min_examples']} examples)"
    )
