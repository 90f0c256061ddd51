"""Figures 4, 5 and the Pareto figures: the data they draw, and PNGs carrying their provenance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saerand.toy import plots
from saerand.toy.mlp import lomax_through_mlp
from saerand.toy.plots import FIGURE4_PANELS, KIND_COLOURS, KINDS, figure4, figure5, pareto_figure

PROVENANCE = {"figure": "test", "seeds": [0, 1], "config": {"n_features": 64}}


def _assert_png_with_provenance(path) -> None:
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert json.loads(image.text["Description"]) == PROVENANCE


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    """Synthetic results shaped like a sweep: 2 latent counts x 4 kinds x 5 coefficients x 3
    seeds, with explained variance falling and sparsity rising as the coefficient grows."""
    rng = np.random.default_rng(0)
    rows = []
    for n_latents in (128, 256):
        for offset, kind in enumerate(KINDS):
            for coefficient in np.geomspace(1e-3, 1e-1, 5):
                for seed in range(3):
                    strength = -np.log10(coefficient)  # 1 (strong penalty) to 3 (weak)
                    rows.append(
                        {
                            "dataset": "Superposed",
                            "kind": kind,
                            "n_latents": n_latents,
                            "l1_coefficient": coefficient,
                            "seed": seed,
                            "one_minus_nre": 0.3 * strength - 0.05 * offset + rng.normal(0, 0.02),
                            "l0": 5 * strength**2 * (1 + offset / 4) + rng.normal(0, 0.5),
                            "l1": strength + rng.normal(0, 0.1),
                            "l1_over_sqrt_l2": 2 * strength + rng.normal(0, 0.1),
                            "hoyer": 1 - 0.2 * strength + rng.normal(0, 0.01),
                            "mmcs": 1 - abs(strength - 2) / 3 + rng.normal(0, 0.01),
                        }
                    )
    return pd.DataFrame(rows)


def test_figure4(tmp_path):
    path = tmp_path / "figure4.png"
    figure4(lomax_through_mlp(n_samples=2000, seed=0), path, PROVENANCE)
    _assert_png_with_provenance(path)


def test_figure4_needs_all_panels(tmp_path):
    panels = lomax_through_mlp(n_samples=100, seed=0)
    del panels["mlp_outputs"]
    with pytest.raises(ValueError, match="mlp_outputs"):
        figure4(panels, tmp_path / "figure4.png", PROVENANCE)


def test_figure5(tmp_path, results):
    path = tmp_path / "figures" / "figure5.png"
    figure5(results[results["kind"] == "inputs"], path, PROVENANCE)
    _assert_png_with_provenance(path)


@pytest.mark.parametrize("measures", ["l1_over_sqrt_l2", "hoyer", ["l0", "l1", "l1_over_sqrt_l2"]])
def test_pareto_figure(tmp_path, results, measures):
    path = tmp_path / "pareto.png"
    pareto_figure(results, measures, path, PROVENANCE)
    _assert_png_with_provenance(path)


def test_pareto_figure_single_seed_has_no_error_bars_but_draws(tmp_path, results):
    path = tmp_path / "pareto.png"
    pareto_figure(results[results["seed"] == 0], "l0", path, PROVENANCE)
    _assert_png_with_provenance(path)


def test_pareto_figure_rejects_unknown_measure_and_mixed_datasets(tmp_path, results):
    with pytest.raises(ValueError, match="l2"):
        pareto_figure(results, "l2", tmp_path / "x.png", PROVENANCE)
    mixed = pd.concat([results, results.assign(dataset="GloVe 50d")])
    with pytest.raises(ValueError, match="one dataset"):
        pareto_figure(mixed, "l0", tmp_path / "x.png", PROVENANCE)


@pytest.fixture()
def drawn(monkeypatch) -> dict:
    """The figure a plot function saves, kept open instead."""
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda figure, path, provenance: saved.update(figure=figure))
    return saved


def test_figure4_scatters_each_panels_points_in_pipeline_order(drawn):
    panels = lomax_through_mlp(n_samples=500, seed=0)
    figure4(panels, "unused.png", PROVENANCE)
    axes = drawn["figure"].axes
    assert [ax.get_title() for ax in axes] == list(FIGURE4_PANELS.values())
    for ax, key in zip(axes, FIGURE4_PANELS):
        points = np.asarray(panels[key])
        [scatter] = ax.collections
        shown = np.column_stack(scatter._offsets3d) if points.shape[1] == 3 else scatter.get_offsets()
        np.testing.assert_allclose(shown, points, rtol=1e-6)
        assert ax.get_xlim() == pytest.approx(tuple(np.quantile(points, plots.FIGURE4_QUANTILES)))


def test_figure5_draws_the_seed_mean_mmcs_per_latent_count(drawn, results):
    inputs = results[results["kind"] == "inputs"]
    figure5(inputs, "unused.png", PROVENANCE)
    [ax] = drawn["figure"].axes
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert len(lines) == 2  # one per latent count
    means = inputs.groupby(["n_latents", "l1_coefficient"])["mmcs"].mean()
    for line, n_latents in zip(lines, (128, 256)):
        np.testing.assert_allclose(line.get_xdata(), means[n_latents].index)
        np.testing.assert_allclose(line.get_ydata(), means[n_latents].to_numpy())
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_legend().texts] == ["128", "256"]


def _dominated(point, others) -> bool:
    """Another (sparsity, 1 - NRE) point as sparse or sparser and explaining as much or more, better in one."""
    x, y = point
    return any(ox <= x and oy >= y and (ox, oy) != (x, y) for ox, oy in others)


def test_pareto_figure_draws_each_kinds_frontier_of_seed_means(drawn, results):
    """Per panel and kind: exactly the coefficients' seed means that no other one dominates (lower
    L0, higher 1 - NRE), left to right, in the kind's colour; the legend names dataset and kind.
    One coefficient of one kind is made worse than a sparser one: it leaves that frontier."""
    middle = np.geomspace(1e-3, 1e-1, 5)[2]
    worse = (results["kind"] == "inputs") & (results["n_latents"] == 128) & (results["l1_coefficient"] == middle)
    results = results.assign(one_minus_nre=results["one_minus_nre"].where(~worse, -0.5))
    pareto_figure(results, "l0", "unused.png", PROVENANCE)
    axes = drawn["figure"].axes
    assert [ax.get_title() for ax in axes] == ["128 Latents", "256 Latents"]
    assert [t.get_text() for t in axes[-1].get_legend().texts] == [
        "Superposed inputs",
        "Gaussian inputs",
        "Superposed outputs",
        "Gaussian outputs",
    ]
    for ax, n_latents in zip(axes, (128, 256)):
        for kind in KINDS:
            runs = results[(results["kind"] == kind) & (results["n_latents"] == n_latents)]
            means = runs.groupby("l1_coefficient")[["l0", "one_minus_nre"]].mean()
            points = list(zip(means["l0"], means["one_minus_nre"]))
            frontier = sorted(p for p in points if not _dominated(p, points))
            [line] = [
                line for line in ax.get_lines() if line.get_color() == KIND_COLOURS[kind] and line.get_marker() == "o"
            ]
            assert list(line.get_xdata()) == sorted(line.get_xdata())
            shown = list(zip(line.get_xdata(), line.get_ydata()))
            assert len(shown) == len(frontier) and np.allclose(shown, frontier), kind
            assert len(shown) == (4 if (kind, n_latents) == ("inputs", 128) else 5)
