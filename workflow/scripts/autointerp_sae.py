from pathlib import Path

from saerand.autointerp.run import score_sae
from saerand.config import SaeTarget
from saerand.jobs import start_job
from saerand.reruns import with_operational

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
explainer = Path(snakemake.output[0]).name  # autointerp/tokens or autointerp/llm
target = SaeTarget(wildcards.model, wildcards.variant, int(wildcards.layer), int(wildcards.expansion), int(wildcards.k))
score_sae(
    f"{snakemake.input.latents}/delphi",
    target.autointerp_module,
    params.model,
    with_operational(params.autointerp, snakemake.config["autointerp"]),
    snakemake.output[0],
    explainer=explainer,
    server_file=snakemake.input.get("server"),
)
