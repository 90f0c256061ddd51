import json
from pathlib import Path

from sparsify import SparseCoder

from saerand.atomic import write_json
from saerand.cache import ActivationCache
from saerand.devices import resolve_device
from saerand.downstream import downstream_scores
from saerand.jobs import start_job
from saerand.metrics import evaluate_sae
from saerand.models import load_tokenizer
from saerand.provenance import provenance
from saerand.settings import EvaluationSettings, job_section
from saerand.variants import load_variant

start_job(snakemake.log[0], snakemake.threads, snakemake.resources)
params, wildcards = snakemake.params, snakemake.wildcards
evaluation_settings = job_section(EvaluationSettings, "evaluation", params.evaluation, snakemake.config)
model_settings = params.model
layer = int(wildcards.layer)
device = resolve_device(evaluation_settings.device)
sae = SparseCoder.load_from_disk(snakemake.input.sae, device=device)
cache = ActivationCache(snakemake.input.cache)
# BOS/EOS/pad positions are masked out of the SAEBench-style metrics.
special_token_ids = load_tokenizer(model_settings["location"], model_settings["revision"]).all_special_ids
# Every SAE resamples the same held-out sequences with the same seed: replicates pair across SAEs.
intervals = {"resamples": evaluation_settings.bootstrap_resamples, "seed": params.seed}
metrics, replicates = evaluate_sae(
    sae,
    cache,
    layer,
    batch_rows=evaluation_settings.batch_tokens,
    special_token_ids=special_token_ids,
    device=device,
    **intervals,
)
# The held-out store's noise stream: the control's CE/KL scores read no training inputs.
subject, variant_record = load_variant(
    model_settings["location"], model_settings, wildcards.variant, seed=params.variant_seed, device=device, split="eval"
)
excluded = special_token_ids if evaluation_settings.ce_special_tokens == "excluded" else ()
ce_sequences = cache.tokens()[: evaluation_settings.ce_sequences]
scores, score_replicates = downstream_scores(
    subject,
    sae,
    layer,
    ce_sequences,
    batch_sequences=evaluation_settings.batch_sequences,
    special_token_ids=excluded,
    **intervals,
)
metrics |= scores
print(metrics)
write_json(
    snakemake.output[0],
    provenance(
        model=wildcards.model,
        variant=wildcards.variant,
        layer=layer,
        metrics=metrics,
        sae={
            "num_latents": sae.num_latents,
            "expansion_factor": sae.num_latents // sae.d_in,
            "k": sae.cfg.k,
            "d_in": sae.d_in,
        },
        sae_provenance=json.loads((Path(snakemake.input.sae) / "provenance.json").read_text()),
        evaluation=params.evaluation,
        eval_cache=cache.attrs,
        variant_record=variant_record,
        special_token_ids=special_token_ids,
        ce_context_length=int(ce_sequences.shape[1]),  # every CE/KL pass's context
        ce_sequences=len(ce_sequences),
        bootstrap=intervals
        | {
            "unit": "held-out sequence",
            "replicates": {
                name: [round(value, 7) for value in values.tolist()]
                for name, values in (replicates | score_replicates).items()
            },
        },
    ),
)
