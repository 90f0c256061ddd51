import json
from pathlib import Path

from saerand.config import SaeHyperparameters
from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.sae_training import SaeTrainer, job_settings, save_sae

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
settings = job_settings(params.sae)
label = SaeHyperparameters(int(wildcards.expansion), int(wildcards.k)).label
checkpoint = Path(snakemake.input[0]) / label
if not checkpoint.is_dir():
    raise FileNotFoundError(
        f"{snakemake.input[0]} holds no training state of SAE {label}: rerun the layer's chain "
        f"(--forcerun train_layer_shard)"
    )
sae, summary = SaeTrainer.from_checkpoint(checkpoint, settings).finish()
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
)
