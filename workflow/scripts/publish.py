import os

from saerand.fetch.offline import job_environment
from saerand.logs import log_to

# The one job besides the fetches that goes online, and the one that keeps the hub token (others
# drop it, saerand.jobs): the network back on before huggingface_hub is imported, which reads it then.
log_to(snakemake.log[0])
os.environ.update(job_environment(snakemake.config["prefetch"]["hf_home"], online=True))

from saerand.atomic import write_json  # noqa: E402
from saerand.provenance import provenance  # noqa: E402
from saerand.publish import (  # noqa: E402
    PublishedSae,
    checked_repo_id,
    hub_token,
    model_card,
    publish,
    repo_files,
)
from saerand.study import SaeTarget  # noqa: E402

params, inputs = snakemake.params, snakemake.input
# Both checked before any request.
repo_id = checked_repo_id(params.repo)
token = hub_token(params.token_env)
interpreted = {tuple(sae) for sae in params.autointerp_saes}
saes = [
    PublishedSae(SaeTarget(*sae), tuple(params.explainers) if tuple(sae) in interpreted else ()) for sae in params.saes
]
files = repo_files(saes, inputs.table, params.saelens)
card = model_card(saes, repo_id, params.reading, params.explainers, inputs.citation, params.saelens)
receipt = publish(repo_id, files, card, token, private=params.private)
write_json(
    snakemake.output.receipt,
    provenance(
        **receipt,
        saes=params.saes,
        explainers=list(params.explainers),
        reading=params.reading,
        saelens=params.saelens,
        token_env=params.token_env,
        sources={path: str(local) for path, local in files.items()},
    ),
)
print(f"published {len(receipt['files'])} files to {receipt['repo_url']}: commit {receipt['commit_url']}")
