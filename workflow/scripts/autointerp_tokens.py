from saerand.autointerp.run import score_sae
from saerand.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
score_sae(f"{snakemake.input.latents}/delphi", f"layers.{wildcards.layer}", params.model, params.autointerp,
          snakemake.output[0], explainer="tokens")
