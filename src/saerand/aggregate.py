"""Gather per-SAE metrics.json files into one tidy table: one row per SAE."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from saerand.config import main_hyperparameters, sweep_layers

KEY_COLUMNS = ["model", "variant", "layer", "expansion_factor", "k"]


def metrics_table(paths: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        sae = record["sae"]
        rows.append({"model": record["model"], "variant": record["variant"], "layer": record["layer"],
                     "expansion_factor": sae["expansion_factor"], "k": sae["k"],
                     "num_latents": sae["num_latents"], **record["metrics"]})
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


def main_study(table: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The SAEs at the study's own hyperparameters (Figure 3)."""
    main = main_hyperparameters(config)
    return table[(table["expansion_factor"] == main.expansion_factor) & (table["k"] == main.k)]


def sweep_study(table: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The SAEs of the hyperparameter sweep (Figure 11): its models, layers and grid."""
    sweep = config["sweep"]
    in_sweep_layers = [layer in sweep_layers(config, model) for model, layer in zip(table["model"], table["layer"])]
    swept = pd.Series(in_sweep_layers, index=table.index, dtype=bool)
    swept &= table["expansion_factor"].isin(sweep["expansion_factors"]) & table["k"].isin(sweep["k"])
    return table[swept]
