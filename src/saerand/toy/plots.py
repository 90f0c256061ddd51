"""Figures of Section 4 / Appendix C: 4 (Lomax example), 5 (MMCS against L1 coefficient) and
the Pareto frontiers of 6, 13-16 (toy data) and 7, 17-20 (word vectors).

Every figure is a PNG whose text metadata "Description" holds `provenance` as JSON.

Tidy result tables, one row per trained SAE:

- Figure 5: `n_latents`, `l1_coefficient`, `seed`, `mmcs`.
- Pareto figures: `dataset` (e.g. "Superposed", "GloVe 300d"; one per figure), `kind` (one of
  `KINDS`), `n_latents`, `l1_coefficient`, `seed`, `one_minus_nre` and the sparsity
  measures `l0`, `l1`, `l1_over_sqrt_l2`, `hoyer` (see `saerand.toy.metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from saerand.plots import save_figure  # noqa: E402
from saerand.toy.metrics import LOWER_IS_SPARSER, pareto_frontier  # noqa: E402
from saerand.toy.sweep import KINDS  # noqa: E402

# Panels of Figure 4 in pipeline order, keyed as `saerand.toy.mlp.lomax_through_mlp` returns them.
FIGURE4_PANELS = {
    "superposed_inputs": "(a) Superposed inputs",
    "mlp_inputs": "(b) MLP inputs",
    "mlp_outputs": "(c) MLP outputs",
    "superposed_outputs": "(d) Superposed outputs",
}
KIND_COLOURS = dict(zip(KINDS, ("#56B4E9", "#009E73", "#0072B2", "#E69F00")))
MEASURE_LABELS = {
    "l0": "L0 Norm",
    "l1": "L1 Norm",
    "l1_over_sqrt_l2": "L1 Norm Over √L2 Norm",
    "hoyer": "Hoyer Sparseness",
}
# Lomax(1, 1) has infinite mean: axes show the central 99% so the arms are visible.
FIGURE4_QUANTILES = (0.005, 0.995)


def figure4(panels: Mapping[str, np.ndarray], path: str | Path, provenance: Mapping) -> None:
    """Scatter plots of the four arrays of `lomax_through_mlp` in pipeline order: 3-D sparse
    features recovered by pinv(D) (a, d) around the 2-D MLP inputs and outputs (b, c), so that
    the paper's pairs "inputs (4a and 4b)" and "outputs (4d and 4c)" face each other."""
    missing = set(FIGURE4_PANELS) - set(panels)
    if missing:
        raise ValueError(f"figure4 needs panels {sorted(FIGURE4_PANELS)}, missing {sorted(missing)}")
    fig = plt.figure(figsize=(16, 4.2))
    for index, (key, title) in enumerate(FIGURE4_PANELS.items(), start=1):
        points = np.asarray(panels[key])
        low, high = np.quantile(points, FIGURE4_QUANTILES)
        if points.shape[1] == 3:
            ax = fig.add_subplot(1, 4, index, projection="3d")
            ax.scatter(*points.T, s=2, alpha=0.3)
            ax.set(xlim=(low, high), ylim=(low, high), zlim=(low, high))
        else:
            ax = fig.add_subplot(1, 4, index)
            ax.scatter(*points.T, s=2, alpha=0.3)
            ax.set(xlim=(low, high), ylim=(low, high), aspect="equal")
        ax.set_title(title)
    save_figure(fig, path, provenance)


def figure5(table: pd.DataFrame, path: str | Path, provenance: Mapping) -> None:
    """MMCS against L1 coefficient (log x), one line per latent count, mean ± SE over seeds."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sns.lineplot(
        data=table,
        x="l1_coefficient",
        y="mmcs",
        hue="n_latents",
        palette="viridis",
        marker="o",
        errorbar="se",
        ax=ax,
    )
    ax.set(xscale="log", xlabel="L1 Coefficient", ylabel="MMCS", ylim=(0, 1.02))
    ax.legend(title="Latents")
    save_figure(fig, path, provenance)


def _seed_means(table: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Mean and standard error over seeds of 1 - NRE and `measure` per coefficient."""
    grouped = table.groupby("l1_coefficient")[["one_minus_nre", measure]]
    means = grouped.mean()
    errors = grouped.sem().add_suffix("_se")  # NaN for a single seed: no error bars
    return means.join(errors).reset_index()


def pareto_figure(
    table: pd.DataFrame,
    sparsity_measures: str | Sequence[str],
    path: str | Path,
    provenance: Mapping,
) -> None:
    """Pareto frontiers of 1 - NRE (the paper's "explained variance") against each sparsity
    measure (one row each), one column per latent count, one line per `kind`; each point is an L1
    coefficient, with standard errors over seeds as error bars in both directions."""
    measures = [sparsity_measures] if isinstance(sparsity_measures, str) else list(sparsity_measures)
    unknown = set(measures) - set(MEASURE_LABELS)
    if unknown:
        raise ValueError(f"unknown sparsity measures {sorted(unknown)}; known: {list(MEASURE_LABELS)}")
    datasets = table["dataset"].unique()
    if len(datasets) != 1:
        raise ValueError(f"pareto_figure draws one dataset, got {list(datasets)}")
    latent_counts = sorted(table["n_latents"].unique())
    fig, axes = plt.subplots(
        len(measures),
        len(latent_counts),
        figsize=(4.5 * len(latent_counts), 3.3 * len(measures)),
        squeeze=False,
        sharey=True,
    )
    for row, measure in enumerate(measures):
        for column, n_latents in enumerate(latent_counts):
            ax = axes[row, column]
            for kind in [k for k in KINDS if k in set(table["kind"])]:
                runs = table[(table["kind"] == kind) & (table["n_latents"] == n_latents)]
                if runs.empty:
                    continue
                frontier = pareto_frontier(
                    _seed_means(runs, measure),
                    measure,
                    "one_minus_nre",
                    minimize_x=LOWER_IS_SPARSER[measure],
                )
                label = kind.replace("gaussian", "Gaussian") if kind.startswith("gaussian") else f"{datasets[0]} {kind}"
                ax.errorbar(
                    frontier[measure],
                    frontier["one_minus_nre"],
                    xerr=frontier[f"{measure}_se"],
                    yerr=frontier["one_minus_nre_se"],
                    color=KIND_COLOURS[kind],
                    marker="o",
                    markersize=4,
                    capsize=2,
                    label=label,
                )
            ax.set_xlabel(MEASURE_LABELS[measure])
            # As in the paper, show 0 to 1: SAEs worse than reconstructing nothing (negative, e.g.
            # with a huge L1 coefficient) fall below the axis.
            ax.set_ylim(-0.05, 1.05)
            if column == 0:
                ax.set_ylabel("Explained Variance (1 - NRE)")
            if row == 0:
                ax.set_title(f"{n_latents} Latents")
    axes[0, -1].legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path, provenance)
