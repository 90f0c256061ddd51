"""Figures 4, 5 and the Pareto figures write PNGs carrying their provenance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saerand.toy.mlp import lomax_through_mlp
from saerand.toy.plots import KINDS, figure4, figure5, pareto_figure

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
