"""Gather per-SAE metrics.json files into one tidy table: one row per SAE."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from saerand.study import SaeTarget

KEY_COLUMNS = ["model", "variant", "layer", "expansion_factor", "k"]


def metrics_table(paths: list[str | Path]) -> pd.DataFrame:
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text())
        sae = record["sae"]
        rows.append(
            {
                "model": record["model"],
                "variant": record["variant"],
                "layer": record["layer"],
                "expansion_factor": sae["expansion_factor"],
                "k": sae["k"],
                "num_latents": sae["num_latents"],
                **record["metrics"],
            }
        )
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


def study_table(saes: Sequence[SaeTarget], inputs: Sequence[str | Path]) -> pd.DataFrame:
    """The metrics table of exactly `saes`: each one's metrics file, and no other. An input outside
    the set, a member without its file, or a file holding another SAE's results is an error."""
    sources = [f"{sae.directory}/metrics.json" for sae in saes]
    inputs = [str(path) for path in inputs]
    foreign = sorted(set(inputs) - set(sources))
    if foreign:
        raise ValueError(f"metrics files not in the set of SAEs: {foreign}")
    missing = [path for path in sources if path not in inputs or not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"metrics files of SAEs in the set are missing: {missing}")
    table = metrics_table(sources)
    tabled = {
        SaeTarget(row.model, row.variant, int(row.layer), int(row.expansion_factor), int(row.k))
        for row in table.itertuples()
    }
    if tabled != set(saes):
        raise ValueError(
            f"the SAEs in the metrics files do not match the set of SAEs: only in the files "
            f"{sorted(tabled - set(saes))}, only in the set {sorted(set(saes) - tabled)}"
        )
    return table


def main_study(table: pd.DataFrame, expansion_factor: int, k: int) -> pd.DataFrame:
    """The SAEs at the study's own hyperparameters (Figure 3)."""
    return table[(table["expansion_factor"] == expansion_factor) & (table["k"] == k)]


def sweep_study(
    table: pd.DataFrame, layers: Mapping[str, Sequence[int]], expansion_factors: Sequence[int], k: Sequence[int]
) -> pd.DataFrame:
    """The SAEs of the hyperparameter sweep (Figure 11): its models' `layers` (model -> swept
    layers) at every point of its grid."""
    in_sweep_layers = [layer in layers.get(model, ()) for model, layer in zip(table["model"], table["layer"])]
    swept = pd.Series(in_sweep_layers, index=table.index, dtype=bool)
    swept &= table["expansion_factor"].isin(expansion_factors) & table["k"].isin(k)
    return table[swept]


SUMMARY_COLUMNS = ("fuzz_auroc", "detection_auroc")
# One AUROC over every latent's samples, beside the mean of per-latent ones; summaries scored before
# it existed lack it (NaN here), and are not scored again for it.
POOLED_COLUMNS = ("fuzz_auroc_pooled", "detection_auroc_pooled")
ENTROPY_COLUMNS = ("entropy_nats", "entropy_normalised")


def autointerp_columns(saes: Sequence[SaeTarget], explainers: Sequence[str]) -> pd.DataFrame:
    """Per SAE: mean AUROC of each scorer per explainer and the pooled one, with their bootstrap
    intervals, and the mean token entropy (the same for every explainer: it comes from the explanation examples)."""
    rows = []
    for sae in saes:
        row = sae._asdict()
        for explainer in explainers:
            summary = json.loads(Path(sae.autointerp_directory(explainer), "summary.json").read_text())
            for column in SUMMARY_COLUMNS:
                for suffix in ("", "_low", "_high"):
                    row[f"{column}_{explainer}{suffix}"] = summary[f"{column}{suffix}"]
            for column in POOLED_COLUMNS:
                for suffix in ("", "_low", "_high"):
                    row[f"{column}_{explainer}{suffix}"] = summary.get(f"{column}{suffix}", float("nan"))
            row[f"latents_scored_{explainer}"] = summary["scored"]
            row[f"latents_failed_{explainer}"] = summary["failed"]
            row[f"samples_unparsed_{explainer}"] = sum(summary[f"{column[:-6]}_unparsed"] for column in SUMMARY_COLUMNS)
            for column in ENTROPY_COLUMNS:
                for suffix in ("", "_low", "_high"):
                    row.setdefault(f"{column}{suffix}", summary[f"{column}{suffix}"])
        rows.append(row)
    return pd.DataFrame(rows)
