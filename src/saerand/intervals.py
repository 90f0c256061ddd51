"""Percentile bootstrap intervals over whole units (held-out sequences, or sampled latents).

A statistic is written over sums of per-unit quantities (`sums[name]` = the sum over units), so a
resample is a weighted sum: unit u drawn c times weighs c. Every SAE evaluated on the same units
with the same seed is resampled with the same weights, so two SAEs' replicates are paired and
their difference replicates give an interval of the difference (saerand.claims).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

LEVEL = 0.95


def resample_counts(n_units: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_units): how often each unit is drawn in each resample of n_units draws."""
    if n_units < 1:
        raise ValueError("nothing to resample: no units")
    return np.random.default_rng(seed).multinomial(n_units, np.full(n_units, 1.0 / n_units), size=resamples)


def bootstrap(
    per_unit: Mapping[str, np.ndarray],
    statistics: Mapping[str, Callable[[dict], np.ndarray]],
    resamples: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point estimates and bootstrap replicates of each statistic.

    per_unit: name -> (n_units,) or (n_units, d) array; statistics: name -> f(sums), where sums
    holds each name's sum over units (shape () or (d,) for the estimate, (resamples,) or
    (resamples, d) for the replicates)."""
    n_units = {len(values) for values in per_unit.values()}
    if len(n_units) != 1:
        raise ValueError(f"per-unit arrays of different lengths: {sorted(n_units)}")
    counts = resample_counts(n_units.pop(), resamples, seed).astype(np.float64)
    totals = {name: np.asarray(values, dtype=np.float64).sum(0) for name, values in per_unit.items()}
    weighted = {name: counts @ np.asarray(values, dtype=np.float64) for name, values in per_unit.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        points = {name: float(statistic(totals)) for name, statistic in statistics.items()}
        replicates = {name: np.asarray(statistic(weighted), dtype=np.float64) for name, statistic in statistics.items()}
    return points, replicates


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The central 95% of the replicates (NaN replicates, e.g. a resample with no kept token, dropped)."""
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - LEVEL) / 2
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def with_intervals(points: Mapping[str, float], replicates: Mapping[str, np.ndarray]) -> dict[str, float]:
    """`points` plus `<name>_low` / `<name>_high` for every statistic with replicates."""
    result = dict(points)
    for name, values in replicates.items():
        result[f"{name}_low"], result[f"{name}_high"] = percentile_interval(values)
    return result


def bootstrap_mean(values: np.ndarray, resamples: int, seed: int) -> tuple[float, np.ndarray]:
    """Mean over units (NaNs dropped) and its replicates."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), np.full(resamples, np.nan)
    points, replicates = bootstrap(
        {"sum": values, "count": np.ones(len(values))}, {"mean": lambda s: s["sum"] / s["count"]}, resamples, seed
    )
    return points["mean"], replicates["mean"]
