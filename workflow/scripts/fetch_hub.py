import logging
import os

from saerand.fetch.artefacts import HubArtefact
from saerand.fetch.download import fetch_hub
from saerand.fetch.offline import job_environment
from saerand.logs import log_to

log_to(snakemake.log[0])
logging.basicConfig(level=logging.INFO)
settings = snakemake.config["prefetch"]
# The one kind of job that uses the network (every other job reads the hub offline).
os.environ.update(job_environment(settings["hf_home"], online=True))
record = fetch_hub(HubArtefact(**snakemake.params.artefact), settings["hf_home"], settings["attempts"])
print(
    f"{record['repo_id']}@{record['revision']}: commit {record['commit']}, {len(record['files'])} files, "
    f"{record['bytes']:,} bytes, verified"
)
