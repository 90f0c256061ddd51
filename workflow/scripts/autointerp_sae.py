from saerand.autointerp.run import score_sae
from saerand.jobs import start_job
from saerand.paths import delphi_cache
from saerand.settings import AutointerpSettings, job_section
from saerand.study import SaeTarget

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
target = SaeTarget.from_wildcards(wildcards)
score_sae(
    delphi_cache(snakemake.input.latents),
    target.autointerp_module,
    params.model,
    job_section(AutointerpSettings, "autointerp", params.autointerp, snakemake.config),
    snakemake.output[0],
    explainer=wildcards.explainer,
    server_file=snakemake.input.get("server"),
)
