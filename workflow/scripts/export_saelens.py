import json
from pathlib import Path

from saerand.jobs import start_job
from saerand.saelens_export import PROVENANCE, export_saelens

start_job(snakemake.log[0], snakemake.threads)
params = snakemake.params
sae_dir = Path(snakemake.input[0])
cfg = export_saelens(
    sae_dir,
    snakemake.output[0],
    json.loads((sae_dir / PROVENANCE).read_text()),
    model_name=params.model_name,
    context_size=params.context_size,
)
print(f"{sae_dir} -> {snakemake.output[0]}: {cfg['metadata']['hook_name']}, d_sae {cfg['d_sae']}, k {cfg['k']}")
