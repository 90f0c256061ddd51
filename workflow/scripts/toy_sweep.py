import json
import shutil
from pathlib import Path

from saerand.atomic import write_json, write_text
from saerand.devices import resolve_device
from saerand.jobs import start_job
from saerand.progress import JsonLinesLog, resume_progress
from saerand.provenance import provenance
from saerand.settings import ToySaeSettings, from_config
from saerand.study import toy_latent_counts
from saerand.toy.sweep import dataset_kinds, grid_point, sweep, toy_dataset

start_job(snakemake.log[0], snakemake.threads)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
device = resolve_device(snakemake.config["toy"]["device"])
inputs, ground_truth = toy_dataset(params.dataset, seed)
kinds = dataset_kinds(inputs, seed, params.gaussian_control, device)
sae_settings = from_config(ToySaeSettings, params.sae, "toy.sae")
# Point by point beside the table: a sweep killed at its time limit continues where it stopped.
table_path = Path(snakemake.output.table)
fingerprint = json.dumps(
    {"dataset": params.dataset, "sae": params.sae, "control": params.gaussian_control, "seed": seed}
)
progress = resume_progress(table_path.with_name(f".{table_path.name}.progress"), fingerprint)
table = sweep(
    kinds,
    toy_latent_counts(params.dataset, inputs.shape[1]),
    sae_settings,
    seed,
    ground_truth,
    device,
    progress=JsonLinesLog(progress / "points.jsonl", key=grid_point),
)
table.insert(0, "dataset", snakemake.wildcards.toy_dataset)
write_json(
    snakemake.output.provenance,
    provenance(
        dataset=params.dataset,
        sae=params.sae,
        gaussian_control=params.gaussian_control,
        seed=seed,
        device=device,
        samples=len(inputs),
        n_dims=inputs.shape[1],
    ),
)
write_text(snakemake.output.table, table.to_csv(index=False))
print(table.to_string())
shutil.rmtree(progress)
