from dataclasses import asdict

from saerand.autointerp.delphi_compat import DelphiTokenizer
from saerand.browser import write_browser
from saerand.jobs import start_job
from saerand.models import load_tokenizer
from saerand.provenance import provenance, without_secrets
from saerand.settings import AutointerpSettings, job_section
from saerand.study import SaeTarget, revision_for

start_job(snakemake.log[0], snakemake.threads)
params, wildcards = snakemake.params, snakemake.wildcards
settings = job_section(AutointerpSettings, "autointerp", params.autointerp, snakemake.config)
tokenizer = DelphiTokenizer(load_tokenizer(params.model["location"], revision_for(params.model, "trained")))
sources = provenance(
    sources=list(snakemake.input), explainer=wildcards.explainer, autointerp=without_secrets(asdict(settings))
)
sizes = write_browser(
    [SaeTarget(*sae) for sae in params.saes],
    wildcards.explainer,
    tokenizer,
    settings,
    snakemake.output[0],
    sources,
    top=params.top,
    per_quantile=params.per_quantile,
)
print(f"{len(sizes)} pages, {sum(sizes.values())} bytes; largest {max(sizes.values())} bytes")
