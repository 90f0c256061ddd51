"""Figures in the style of the paper: Figure 3 (metric against layer, one line per variant) and
Figure 11 (the same metrics across SAE hyperparameters)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from .atomic import atomic_file  # noqa: E402
from .autointerp.explainers import EXPLAINERS  # noqa: E402
from .variant_registry import VARIANTS  # noqa: E402

# Which held-out columns the explained variance and cosine rows draw (saerand.metrics computes
# both readings for every SAE): SAEBench's per-token ratios with BOS/EOS/pad masked, or the
# pooled ratio over every position.
READINGS = {
    "masked_per_token": {
        "explained_variance": "explained_variance_masked_per_token",
        "cosine_similarity": "cosine_similarity_masked",
    },
    "pooled": {"explained_variance": "explained_variance", "cosine_similarity": "cosine_similarity"},
}
# Short enough to stand beside a 2-inch row (the caption and README say more).
READING_NOTES = {"masked_per_token": "per token, masked", "pooled": "pooled"}
FIGURE3_METRICS = {
    "explained_variance": "Explained Var. (R²)",
    "cosine_similarity": "Cosine Similarity",
    "l1": "L1 Norm",
    "ce_loss_score": "CE Loss Score (Trained)",
    "dead_fraction": "Dead Fraction",
    **{f"fuzz_auroc_{name}": f"Fuzzing AUROC\n({e.figure_label})" for name, e in EXPLAINERS.items()},
    "entropy_normalised": "Token Entropy\n(normalised)",
}


def _variant_labels(variants: pd.Series) -> tuple[pd.Series, list[str]]:
    """Each variant's label, and the labels present in the registry's order (the legends' and rows')."""
    present = set(variants)
    return variants.map(lambda v: VARIANTS[v].label), [v.label for name, v in VARIANTS.items() if name in present]


def _metric_grid(table: pd.DataFrame, x: str, reading: str, **relplot_kwargs) -> sns.FacetGrid:
    """One row per metric, one column per model, one line per variant; EV and cosine in `reading`.
    A metric only some of the SAEs have (auto-interp covers the study's own) gets no row."""
    table = table.assign(
        **{
            f"{row}{suffix}": table[f"{column}{suffix}"]
            for row, column in READINGS[reading].items()
            for suffix in ("", "_low", "_high")
            if f"{column}{suffix}" in table.columns
        }
    )
    metrics = [m for m in FIGURE3_METRICS if m in table.columns and table[m].notna().all()]
    keys = [c for c in ("model", "variant", "layer", "expansion_factor", "k") if c in table.columns]
    long = table.melt(id_vars=keys, value_vars=metrics, var_name="metric")
    # As in the paper, the CE loss score row shows the trained model only.
    long = long[(long["metric"] != "ce_loss_score") | (long["variant"] == "trained")]
    long["Variant"], hue_order = _variant_labels(long["variant"])
    palette = {v.label: v.colour for v in VARIANTS.values()}
    grid = sns.relplot(
        data=long,
        x=x,
        y="value",
        hue="Variant",
        hue_order=hue_order,
        palette=palette,
        row="metric",
        row_order=metrics,
        col="model",
        kind="line",
        marker="o",
        height=2.0,
        aspect=1.4,
        facet_kws={"sharey": "row", "sharex": "col"},
        **relplot_kwargs,
    )
    grid.set_titles(template="")
    _draw_intervals(grid, table, x, metrics, hue_order)
    for (metric, model), ax in grid.axes_dict.items():
        label = FIGURE3_METRICS[metric]
        ax.set_ylabel(f"{label}\n({READING_NOTES[reading]})" if metric in READINGS[reading] else label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "l1":
            ax.set_yscale("log")
            # Plain numbers at 1, 2, 5 x 10^n rather than 3 x 10^1.
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        if metric == metrics[0]:
            ax.set_title(model)
    return grid


def _draw_intervals(grid: sns.FacetGrid, table: pd.DataFrame, x: str, metrics: list[str], hue_order: list[str]) -> None:
    """Each point's 95% bootstrap interval (`<column>_low` / `_high`): a band along a line of one SAE
    per x (Figure 3); bars at the mean of the interval bounds where a point averages several SAEs
    (Figure 11's layers)."""
    for (metric, model), ax in grid.axes_dict.items():
        if metric == "ce_loss_score":
            rows = table[(table["model"] == model) & (table["variant"] == "trained")]
        else:
            rows = table[table["model"] == model]
        if f"{metric}_low" not in rows.columns or rows[f"{metric}_low"].isna().all():
            continue
        styles = ["k"] if "k" in rows.columns and rows["k"].nunique() > 1 else []
        for (variant, *_), line in rows.groupby(["variant", *styles]):
            name, colour = VARIANTS[variant].label, VARIANTS[variant].colour
            if name not in hue_order:
                continue
            bounds = line.groupby(x)[[f"{metric}_low", f"{metric}_high"]].mean().sort_index()
            if line.duplicated(x).any():
                centre = line.groupby(x)[metric].mean().sort_index()
                ax.errorbar(
                    bounds.index,
                    centre,
                    yerr=[centre - bounds.iloc[:, 0], bounds.iloc[:, 1] - centre],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=0.8,
                    capsize=2,
                    alpha=0.7,
                )
            else:
                ax.fill_between(bounds.index, bounds.iloc[:, 0], bounds.iloc[:, 1], color=colour, alpha=0.2, lw=0)


def save_figure(figure: plt.Figure, path: str | Path, provenance: Mapping) -> None:
    """A PNG whose text chunks carry the provenance with the picture, published at once."""
    with atomic_file(path) as staging:
        figure.savefig(staging, format="png", dpi=120, metadata={"Description": json.dumps(provenance, default=str)})
    plt.close(figure)


def _save(grid: sns.FacetGrid, path: str | Path, provenance: dict) -> None:
    save_figure(grid.figure, path, provenance)


def figure3(table: pd.DataFrame, path: str | Path, provenance: dict, reading: str) -> None:
    """Metric against layer, one line per variant with its 95% bootstrap band: the SAEs at one (expansion, k)."""
    if table.duplicated(["model", "variant", "layer"]).any():
        raise ValueError("figure 3 takes one SAE per (model, variant, layer); select one (expansion, k)")
    grid = _metric_grid(table, x="layer", reading=reading, errorbar=None)
    grid.set_xlabels("Layer")
    _save(grid, path, provenance)


def figure11(table: pd.DataFrame, path: str | Path, provenance: dict, reading: str) -> None:
    """Metric against expansion factor, solid/dashed per k, the mean over layers with bars from the
    mean of the layers' 95% interval bounds."""
    table = table.assign(k=table["k"].map(lambda k: f"k = {k}"))
    grid = _metric_grid(table, x="expansion_factor", reading=reading, style="k", errorbar=None)
    for ax in grid.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(table["expansion_factor"].unique()), map(str, sorted(table["expansion_factor"].unique())))
    grid.set_xlabels("Expansion factor")
    _save(grid, path, provenance)


CURVE_MEASURES = {
    "fvu": "Training FVU",
    "fired_fraction": "Latents fired\nsince last point",
    "dead_fraction": "Dead latents",
}


def training_curves_figure(curves: pd.DataFrame, path: str | Path, provenance: Mapping, title: str) -> None:
    """Each SAE's training curve (saerand.sae_training.SaeTrainer.curve) against tokens: a row per
    variant, a column per measure, a line per layer. `curves`: variant, layer, tokens and the measures;
    none (SAEs trained before curves were recorded): the title alone."""
    if curves.empty:
        figure = plt.figure(figsize=(6, 1))
        figure.text(0.5, 0.5, title, ha="center", va="center")
        save_figure(figure, path, provenance)
        return
    long = curves.melt(id_vars=["variant", "layer", "tokens"], value_vars=list(CURVE_MEASURES), var_name="measure")
    long["Variant"], variant_order = _variant_labels(long["variant"])
    long["Layer"] = long["layer"].astype(int)
    grid = sns.relplot(
        data=long,
        x="tokens",
        y="value",
        hue="Layer",
        row="Variant",
        col="measure",
        col_order=list(CURVE_MEASURES),
        row_order=variant_order,
        kind="line",
        palette="viridis",
        height=1.8,
        aspect=1.4,
        facet_kws={"sharey": "col", "margin_titles": True},
    )
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    for (_, measure), ax in grid.axes_dict.items():
        ax.set_ylabel(CURVE_MEASURES[measure])
        ax.set_title(ax.get_title().replace(measure, ""))
    grid.set_xlabels("Tokens")
    grid.figure.suptitle(title, y=1.01)
    _save(grid, path, provenance)
