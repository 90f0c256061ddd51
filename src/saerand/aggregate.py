"""Gather per-SAE metrics.json files into one tidy table: one row per (model, variant, layer)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

KEY_COLUMNS = ["model", "variant", "layer"]


def metrics_table(paths: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        rows.append({**{key: record[key] for key in KEY_COLUMNS}, **record["metrics"],
                     "num_latents": record["sae"]["num_latents"], "k": record["sae"]["k"]})
    if not rows:
        raise ValueError("no metrics files to aggregate")
    table = pd.DataFrame(rows).sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    # The paper (3.2): CE loss scores mean something only for the trained model; a randomized
    # model predicts text badly whatever is spliced in. Kept for all, flagged here.
    if "ce_loss_score" in table.columns:
        table["ce_score_meaningful"] = table["variant"] == "trained"
    duplicated = table.duplicated(KEY_COLUMNS)
    if duplicated.any():
        raise ValueError(f"duplicate SAEs in metrics: {table.loc[duplicated, KEY_COLUMNS].to_dict('records')}")
    return table
