from dataclasses import asdict

from sparsify import SparseCoder

from saerand.atomic import atomic_directory
from saerand.autointerp.latents import without_special_tokens, write_latent_cache
from saerand.devices import resolve_device
from saerand.jobs import start_job
from saerand.models import load_tokenizer
from saerand.paths import DELPHI_CACHE
from saerand.provenance import provenance
from saerand.settings import AutointerpSettings, job_section
from saerand.study import revision_for
from saerand.token_store import load_token_store
from saerand.variants import load_variant

start_job(snakemake.log[0], snakemake.threads, snakemake.resources)
params, wildcards = snakemake.params, snakemake.wildcards
model_settings = params.model
autointerp_settings = job_section(AutointerpSettings, "autointerp", params.autointerp, snakemake.config)
device = resolve_device(autointerp_settings.device)
sequences = load_token_store(snakemake.input.tokens)
if autointerp_settings.filter_special_tokens:
    tokenizer = load_tokenizer(model_settings["location"], revision_for(model_settings, "trained"))
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id} - {None}
    sequences = without_special_tokens(sequences, special)
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
# The whole output appears by one rename (a failed job leaves none of it), with delphi's raw
# directory inside it, where Snakemake's own timestamp file does not land.
with atomic_directory(snakemake.output[0]) as output:
    selections = write_latent_cache(
        output / DELPHI_CACHE,
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
            autointerp=asdict(autointerp_settings),
            saes={module: path for (module, _), path in zip(params.modules, snakemake.input.saes)},
            **variant_record,
        ),
    )
for module, selection in selections.items():
    print(
        f"{module}: {len(selection.selected)} latents kept of {selection.drawn} drawn "
        f"({selection.dead} dead, {selection.too_rare} with fewer than {autointerp_settings.min_examples} examples)"
    )
