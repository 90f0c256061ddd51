from pathlib import Path

import pandas as pd

from saerand.jobs import start_job
from saerand.paths import CURVE_FILE
from saerand.plots import training_curves_figure
from saerand.provenance import provenance
from saerand.study import SaeTarget

start_job(snakemake.log[0], snakemake.threads)
params = snakemake.params
curves, missing = [], []
for sae, directory in zip((SaeTarget(*sae) for sae in params.saes), snakemake.input):
    path = Path(directory) / CURVE_FILE
    if path.exists():
        curves.append(pd.read_csv(path).assign(variant=sae.variant, layer=sae.layer))
    else:
        missing.append(f"{sae.variant} layer {sae.layer}")
# SAEs finished before curves were recorded have none; they are named, not retrained.
title = f"{params.model}: training curves" + (f" (none recorded for {', '.join(missing)})" if missing else "")
training_curves_figure(
    pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
    snakemake.output[0],
    provenance(sources=list(snakemake.input), saes=params.saes, missing=missing),
    title,
)
