"""The paper's claims as numbers, each with a 95% interval and a verdict.

Similarity (Section 3.2, Figure 3): for each (model, layer) and metric, trained minus each random
variant, and trained minus the control; the claim "similar" holds where the difference's interval
lies inside +-margin. Held-out metrics are resampled over the same sequences with the same seed
for every SAE, so their replicates pair and the difference's interval is paired; AUROC is
resampled over each SAE's own latents, independent samples, so one side's replicates are shuffled
before they are subtracted (independent replicates of the two).

Token entropy (Section 3.3): the ordering the paper describes, per model: the control highest,
the random variants lowest, the trained model's rising with depth. Each is a gap that must be
positive (the smallest over layers, or the slope over layers); it holds where its whole interval
is above zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import autointerp_directory
from .config import SaeTarget
from .intervals import percentile_interval

NON_RANDOM = ("trained", "control")
# Resampled over each SAE's own sampled latents (not the shared held-out sequences).
LATENT_COLUMNS = ("fuzz_auroc", "detection_auroc", "entropy")
COLUMNS = ["model", "layer", "claim", "metric", "comparison", "estimate", "low", "high", "margin", "holds"]


def replicates_of(sae: SaeTarget, explainers: Sequence[str]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point estimates and bootstrap replicates of one SAE: its held-out metrics, and per explainer
    `fuzz_auroc_<explainer>`, with the token entropy (the same for every explainer)."""
    record = json.loads(Path(sae.directory, "metrics.json").read_text())
    points = dict(record["metrics"])
    replicates = {name: np.asarray(values, dtype=float) for name, values in record["bootstrap"]["replicates"].items()}
    for explainer in explainers:
        summary = json.loads(Path(autointerp_directory(sae, explainer), "summary.json").read_text())
        for column in ("fuzz_auroc", "entropy_normalised"):
            name = column if column.startswith("entropy") else f"{column}_{explainer}"
            points[name] = summary[column]
            replicates[name] = np.asarray(summary["bootstrap"]["replicates"][column], dtype=float)
    return points, replicates


def _row(
    model: str,
    layer,
    claim: str,
    metric: str,
    comparison: str,
    estimate: float,
    replicates: np.ndarray,
    margin: float | None,
) -> dict:
    low, high = percentile_interval(replicates)
    holds = (-margin <= low and high <= margin) if margin is not None else bool(low > 0)
    return dict(zip(COLUMNS, (model, layer, claim, metric, comparison, estimate, low, high, margin, holds)))


def similarity_claims(
    results: Mapping[SaeTarget, tuple[dict, dict]], metrics: Mapping[str, str], margins: Mapping[str, float]
) -> list[dict]:
    """`metrics`: label -> column (the figure's reading of EV and cosine, and each explainer's AUROC);
    `margins`: label -> margin (AUROC columns take the margin of 'fuzz_auroc')."""
    rows = []
    by_key = {(sae.model, sae.layer, sae.variant): value for sae, value in results.items()}
    for model, layer in sorted({(sae.model, sae.layer) for sae in results}):
        if (model, layer, "trained") not in by_key:
            continue
        trained_points, trained_replicates = by_key[(model, layer, "trained")]
        others = sorted(
            {sae.variant for sae in results if sae.model == model and sae.variant != "trained"},
            key=lambda v: (v == "control", v),
        )
        for variant in others:
            points, replicates = by_key[(model, layer, variant)]
            claim = "trained and control similar" if variant == "control" else "trained and random similar"
            for label, column in metrics.items():
                if column not in points or column not in trained_points:
                    continue
                margin = margins[label if label in margins else "fuzz_auroc"]
                other = replicates[column]
                if column.startswith(LATENT_COLUMNS):
                    other = np.random.default_rng(0).permutation(other)
                rows.append(
                    _row(
                        model,
                        layer,
                        claim,
                        column,
                        f"trained - {variant}",
                        trained_points[column] - points[column],
                        trained_replicates[column] - other,
                        margin,
                    )
                )
    return rows


def entropy_claims(results: Mapping[SaeTarget, tuple[dict, dict]], column: str = "entropy_normalised") -> list[dict]:
    rows = []
    for model in sorted({sae.model for sae in results}):
        saes = {
            (sae.variant, sae.layer): value
            for sae, value in results.items()
            if sae.model == model and column in value[0]
        }
        if not saes:
            continue
        # Each SAE's latents are its own sample: its replicates shuffled, so that SAEs' replicates are independent.
        saes = {
            key: (points, {column: np.random.default_rng(index).permutation(replicates[column])})
            for index, (key, (points, replicates)) in enumerate(sorted(saes.items()))
        }
        variants = sorted({variant for variant, _ in saes})
        layers = sorted(layer for layer in {layer for _, layer in saes} if all((v, layer) in saes for v in variants))
        randoms = [v for v in variants if v not in NON_RANDOM]

        def gap(higher: Sequence[str], lower: Sequence[str], which: int, saes=saes, layers=layers) -> np.ndarray:
            """min over layers of (min over `higher` - max over `lower`); which 0: estimate, 1: replicates."""
            per_layer = [
                np.min([_pick(saes[(v, layer)], column, which) for v in higher], axis=0)
                - np.max([_pick(saes[(v, layer)], column, which) for v in lower], axis=0)
                for layer in layers
            ]
            return np.min(per_layer, axis=0)

        if "control" in variants and len(variants) > 1:
            others = [v for v in variants if v != "control"]
            rows.append(
                _row(
                    model,
                    "all",
                    "control has the highest token entropy",
                    column,
                    f"control - max({', '.join(others)})",
                    float(gap(["control"], others, 0)),
                    gap(["control"], others, 1),
                    None,
                )
            )
        kept = [v for v in NON_RANDOM if v in variants]
        if randoms and kept:
            rows.append(
                _row(
                    model,
                    "all",
                    "random variants have the lowest token entropy",
                    column,
                    f"min({', '.join(kept)}) - max({', '.join(randoms)})",
                    float(gap(kept, randoms, 0)),
                    gap(kept, randoms, 1),
                    None,
                )
            )
        if "trained" in variants and len(layers) > 1:
            slope = _slope(layers, np.array([_pick(saes[("trained", layer)], column, 0) for layer in layers]))
            replicates = _slope(layers, np.array([_pick(saes[("trained", layer)], column, 1) for layer in layers]))
            rows.append(
                _row(
                    model,
                    "all",
                    "trained token entropy rises with depth",
                    column,
                    "slope over layers (per layer)",
                    float(slope),
                    replicates,
                    None,
                )
            )
    return rows


def _pick(result: tuple[dict, dict], column: str, which: int):
    return result[which][column]


def _slope(layers: Sequence[int], values: np.ndarray) -> np.ndarray:
    """Least-squares slope over layers; values: (layers,) or (layers, replicates)."""
    x = np.asarray(layers, dtype=float)
    x = x - x.mean()
    return np.tensordot(x, values - values.mean(0), axes=(0, 0)) / (x**2).sum()


def claims_table(
    results: Mapping[SaeTarget, tuple[dict, dict]], metrics: Mapping[str, str], margins: Mapping[str, float]
) -> pd.DataFrame:
    return pd.DataFrame(similarity_claims(results, metrics, margins) + entropy_claims(results), columns=COLUMNS)
