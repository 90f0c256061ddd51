import json
from pathlib import Path

from saerand.finished_sae import finalize_sae
from saerand.jobs import start_job
from saerand.reruns import with_operational
from saerand.study import SaeTarget

start_job(snakemake.log[0], snakemake.threads, snakemake.resources)
params, wildcards = snakemake.params, snakemake.wildcards
target = SaeTarget.from_wildcards(wildcards)
point = target.hyperparameters
checkpoint = Path(snakemake.input[0]) / point.label
if not checkpoint.is_dir():
    from saerand.sae_training import retrain_hint

    raise FileNotFoundError(
        f"{snakemake.input[0]} holds no training state of SAE {point.label}: "
        f"{retrain_hint(target.model, target.variant, target.layer, point)}"
    )
last = json.loads((checkpoint / "provenance.json").read_text())
summary = finalize_sae(
    checkpoint,
    snakemake.output[0],
    dict(
        model=target.model,
        variant=target.variant,
        layer=target.layer,
        sae_config=params.sae,
        seed=params.sae["seed"],
        cache=last["cache"],
    ),
    with_operational(params.sae, snakemake.config["sae"]),
)
print(summary)
