import json
from pathlib import Path

from sparsify import SparseCoder

from saerand.atomic import write_json
from saerand.cache import ActivationCache
from saerand.jobs import start_job
from saerand.metrics import evaluate_sae
from saerand.models import resolve_device
from saerand.provenance import provenance

start_job(snakemake.log[0], snakemake.threads)
wildcards, evaluation = snakemake.wildcards, snakemake.params.evaluation
device = resolve_device(evaluation["device"])
sae = SparseCoder.load_from_disk(snakemake.input.sae, device=device)
cache = ActivationCache(snakemake.input.cache)
metrics = evaluate_sae(sae, cache, int(wildcards.layer), batch_rows=evaluation["batch_tokens"], device=device)
print(metrics)
write_json(snakemake.output[0], provenance(
    model=wildcards.model, variant=wildcards.variant, layer=int(wildcards.layer), metrics=metrics,
    sae={"num_latents": sae.num_latents, "k": sae.cfg.k, "d_in": sae.d_in},
    sae_provenance=json.loads((Path(snakemake.input.sae) / "provenance.json").read_text()),
    evaluation=evaluation, eval_cache=cache.attrs,
))
