import logging

from saerand.atomic import write_json
from saerand.fetch.download import fetch_archive
from saerand.logs import log_to

log_to(snakemake.log[0])
logging.basicConfig(level=logging.INFO)
settings = snakemake.config["prefetch"]
record = fetch_archive(
    settings["glove"]["urls"],
    settings["glove"]["checksum"],
    snakemake.params.files,
    settings["attempts"],
    settings["timeout"],
)
write_json(snakemake.output.record, record)
print(f"{record['url']}: verified ({record['checksum']}), {len(record['files'])} files unzipped, the zip removed")
