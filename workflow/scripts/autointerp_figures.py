from saerand.atomic import write_text
from saerand.autointerp.delphi_compat import DelphiTokenizer
from saerand.autointerp.figures import appendix_d_figure, examples_table, latent_cache, roc_figure, top_examples
from saerand.jobs import start_job
from saerand.models import load_tokenizer
from saerand.provenance import provenance
from saerand.settings import AutointerpSettings, job_section
from saerand.study import SaeTarget, revision_for

start_job(snakemake.log[0], snakemake.threads)
params, wildcards, output = snakemake.params, snakemake.wildcards, snakemake.output
saes = [SaeTarget(*sae) for sae in params.saes]
sources = provenance(sources=list(snakemake.input), explainer=wildcards.explainer)
roc_figure(saes, wildcards.explainer, "fuzz", output.roc, sources | {"scorer": "fuzz"})
# Appendix D: the listed latents' top activating examples, read from the caches they were scored on.
listed = examples_table(saes, wildcards.explainer, params.per_sae)
tokenizer = DelphiTokenizer(load_tokenizer(params.model["location"], revision_for(params.model, "trained")))
settings = job_section(AutointerpSettings, "autointerp", params.autointerp, snakemake.config)
examples = {}
for sae in saes:
    latents = set(listed[(listed["variant"] == sae.variant) & (listed["layer"] == sae.layer)]["latent"])
    examples |= {
        (sae, latent): top
        for latent, top in top_examples(latent_cache(sae), sae.autointerp_module, tokenizer, settings, latents).items()
    }
table = examples_table(saes, wildcards.explainer, params.per_sae, examples)
write_text(output.examples, table.to_csv(index=False))
# The figure shows each SAE's first listed latent (the table has them all), as the paper's few examples.
first = table.groupby(["variant", "layer"], sort=False).head(1)
appendix_d_figure(first, examples, output.appendix_d, sources)
