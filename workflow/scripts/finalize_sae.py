import json
from pathlib import Path

from saerand.config import SaeHyperparameters
from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.reruns import with_operational
from saerand.sae_training import SaeTrainer, job_settings, retrain_hint, save_sae

start_job(snakemake.log[0], snakemake.threads, snakemake.resources)
params, wildcards = snakemake.params, snakemake.wildcards
settings = job_settings(with_operational(params.sae, snakemake.config["sae"]))
point = SaeHyperparameters(int(wildcards.expansion), int(wildcards.k))
checkpoint = Path(snakemake.input[0]) / point.label
if not checkpoint.is_dir():
    raise FileNotFoundError(
        f"{snakemake.input[0]} holds no training state of SAE {point.label}: "
        f"{retrain_hint(wildcards.model, wildcards.variant, wildcards.layer, point)}"
    )
trainer = SaeTrainer.from_checkpoint(checkpoint, settings)
sae, summary = trainer.finish()
print(summary)
last = json.loads((checkpoint / "provenance.json").read_text())
save_sae(
    sae.cpu(),
    snakemake.output[0],
    provenance(
        model=wildcards.model,
        variant=wildcards.variant,
        layer=int(wildcards.layer),
        sae_config=params.sae,
        seed=params.sae["seed"],
        training=summary,
        cache=last["cache"],
    ),
    curve=trainer.curve,
)
