import json

import pandas as pd
import pytest
from PIL import Image

from saerand.aggregate import main_study, metrics_table, sweep_study
from saerand.plots import figure3, figure11

VARIANTS = ["trained", "control"]
# What workflow/rules/aggregate.smk passes as params: the study's own (expansion, k), and the sweep's
# layers per model and grid.
STUDY = {"expansion_factor": 4, "k": 2}
SWEEP = {"layers": {"m": [1, 2]}, "expansion_factors": [2, 4], "k": [2]}


def _write(tmp_path, variant, layer, expansion, k, ev):
    path = tmp_path / f"{variant}-{layer}-{expansion}-{k}.json"
    metrics = {
        "explained_variance": ev,
        "cosine_similarity": ev,
        "l1": 3.0,
        "ce_loss_score": 0.5,
        "explained_variance_masked_per_token": ev - 0.05,
        "cosine_similarity_masked": ev - 0.01,
    }
    path.write_text(
        json.dumps(
            {
                "model": "m",
                "variant": variant,
                "layer": layer,
                "metrics": metrics,
                "sae": {"num_latents": 8 * expansion, "expansion_factor": expansion, "k": k},
            }
        )
    )
    return path


@pytest.fixture
def table(tmp_path):
    paths = [_write(tmp_path, v, layer, 4, 2, 0.9 - 0.1 * layer) for v in VARIANTS for layer in range(3)]
    paths += [_write(tmp_path, v, layer, 2, 2, 0.8 - 0.1 * layer) for v in VARIANTS for layer in (1, 2)]
    return metrics_table(paths[::-1])


def test_metrics_table_is_tidy_and_sorted(table):
    assert len(table) == 10
    assert table[["variant", "layer", "expansion_factor"]].values.tolist()[:3] == [
        ["control", 0, 4],
        ["control", 1, 2],
        ["control", 1, 4],
    ]
    assert table["ce_score_meaningful"].tolist() == (table["variant"] == "trained").tolist()


def test_duplicate_saes_are_refused(tmp_path):
    paths = [_write(tmp_path, "trained", 0, 4, 2, 0.9), _write(tmp_path / "..", "trained", 0, 4, 2, 0.8)]
    with pytest.raises(ValueError, match="duplicate SAEs"):
        metrics_table(paths)


def test_study_and_sweep_selections(table):
    assert sorted(main_study(table, **STUDY)["layer"]) == [0, 0, 1, 1, 2, 2]
    sweep = sweep_study(table, **SWEEP)
    assert sorted(zip(sweep["layer"], sweep["expansion_factor"])) == sorted([(1, 2), (1, 4), (2, 2), (2, 4)] * 2)
    # Only what the params say: a layer, a model or a grid point left out of them is left out.
    narrower = sweep_study(table, layers={"m": [2], "other": [1]}, expansion_factors=[2], k=[2, 3])
    assert sorted(zip(narrower["layer"], narrower["expansion_factor"])) == [(2, 2), (2, 2)]
    assert sweep_study(table, layers={"other": [1, 2]}, expansion_factors=[2, 4], k=[2]).empty
    assert main_study(table, expansion_factor=4, k=3).empty


@pytest.mark.parametrize("reading", ["masked_per_token", "pooled"])
def test_figures_carry_provenance(table, tmp_path, reading):
    figure3(main_study(table, **STUDY), tmp_path / "f3.png", {"seed": 7}, reading)
    figure11(sweep_study(table, **SWEEP), tmp_path / "f11.png", {"seed": 8}, reading)
    for name, seed in (("f3.png", 7), ("f11.png", 8)):
        image = Image.open(tmp_path / name)
        assert image.size[0] > 300 and json.loads(image.text["Description"])["seed"] == seed
    with pytest.raises(ValueError, match="one SAE per"):
        figure3(table, tmp_path / "mixed.png", {}, reading)


def test_figure_readings_draw_their_own_columns(table, monkeypatch):
    """The EV and cosine rows show the masked per-token columns or the pooled ones."""
    from saerand import plots

    drawn = {}

    def capture(data, **kwargs):
        drawn["values"] = data
        raise RuntimeError("captured")

    monkeypatch.setattr(plots.sns, "relplot", capture)
    for reading, column in (
        ("masked_per_token", "explained_variance_masked_per_token"),
        ("pooled", "explained_variance"),
    ):
        with pytest.raises(RuntimeError, match="captured"):
            plots.figure3(main_study(table, **STUDY), "unused.png", {}, reading)
        values = drawn["values"].query("metric == 'explained_variance'").sort_values(["variant", "layer"])["value"]
        assert values.tolist() == main_study(table, **STUDY).sort_values(["variant", "layer"])[column].tolist()


def test_a_metric_only_the_studys_saes_have_gets_no_row_in_the_sweep_figure(table, monkeypatch):
    """Auto-interp covers the study's own SAEs: Figure 3 draws its row, Figure 11 does not."""
    from saerand import plots

    drawn = {}

    def capture(data, **kwargs):
        drawn["rows"] = kwargs["row_order"]
        raise RuntimeError("captured")

    monkeypatch.setattr(plots.sns, "relplot", capture)
    on_main = (table["expansion_factor"] == STUDY["expansion_factor"]) & (table["k"] == STUDY["k"])
    table = table.assign(fuzz_auroc_tokens=table["l1"].where(on_main))
    with pytest.raises(RuntimeError, match="captured"):
        plots.figure3(main_study(table, **STUDY), "unused.png", {}, "pooled")
    assert "fuzz_auroc_tokens" in drawn["rows"]
    with pytest.raises(RuntimeError, match="captured"):
        plots.figure11(sweep_study(table, **SWEEP), "unused.png", {}, "pooled")
    assert "fuzz_auroc_tokens" not in drawn["rows"] and "l1" in drawn["rows"]


def test_intervals_are_drawn_as_bands_for_one_sae_per_point_and_bars_for_a_mean_over_layers(table, monkeypatch):
    from matplotlib.collections import LineCollection, PolyCollection

    from saerand import plots

    table = table.assign(
        explained_variance_masked_per_token_low=table["explained_variance_masked_per_token"] - 0.02,
        explained_variance_masked_per_token_high=table["explained_variance_masked_per_token"] + 0.03,
    )
    saved = {}
    monkeypatch.setattr(plots, "_save", lambda grid, path, provenance: saved.update({path: grid}))
    plots.figure3(main_study(table, **STUDY), "f3", {}, "masked_per_token")
    plots.figure11(sweep_study(table, **SWEEP), "f11", {}, "masked_per_token")
    for path, kind, count in (("f3", PolyCollection, 2), ("f11", LineCollection, 2)):
        axes = saved[path].axes_dict
        ev = axes[("explained_variance", "m")]
        drawn = [c for c in ev.collections if isinstance(c, kind)]
        assert len(drawn) >= count  # one per variant
        assert not [c for c in axes[("l1", "m")].collections if isinstance(c, (PolyCollection, LineCollection))]
    band = [c for c in saved["f3"].axes_dict[("explained_variance", "m")].collections if isinstance(c, PolyCollection)][
        0
    ]
    ys = band.get_paths()[0].vertices[:, 1]
    trained = main_study(table, **STUDY).query("variant == 'control'")["explained_variance_masked_per_token"]
    assert ys.min() == pytest.approx(trained.min() - 0.02) and ys.max() == pytest.approx(trained.max() + 0.03)


def test_training_curves_draw_each_saes_points_by_variant_and_measure(tmp_path, monkeypatch):
    """A row per variant, a column per measure, a line per layer through that SAE's own points."""
    from saerand import plots

    curves = pd.DataFrame(
        [
            {
                "variant": variant,
                "layer": layer,
                "tokens": 100 * point,
                "fvu": 1 / point + layer,
                "fired_fraction": 0.5,
                "dead_fraction": 0.0,
            }
            for variant in ("trained", "control")
            for layer in (0, 1)
            for point in (1, 2, 3)
        ]
    )
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda figure, path, provenance: saved.update(figure=figure))
    plots.training_curves_figure(curves, tmp_path / "curves.png", {}, "m: training curves")
    axes = saved["figure"].axes
    assert len(axes) == 2 * 3
    fvu = [ax for ax in axes if ax.get_ylabel() == "Training FVU"]
    lines = sorted(
        (tuple(line.get_xdata()), tuple(line.get_ydata()))
        for ax in fvu
        for line in ax.get_lines()
        if len(line.get_xdata())
    )
    assert lines[0] == ((100, 200, 300), (1.0, 0.5, 1 / 3)) and len(lines) == 2 * 2
    # SAEs trained before curves: a title and no axes.
    plots.training_curves_figure(pd.DataFrame(), tmp_path / "none.png", {}, "m: none recorded")
    assert not saved["figure"].axes and saved["figure"].texts[0].get_text() == "m: none recorded"


@pytest.mark.parametrize(
    "reading, column", [("masked_per_token", "explained_variance_masked_per_token"), ("pooled", "explained_variance")]
)
def test_figure3_draws_each_variants_values_against_layer_in_its_colour(table, monkeypatch, reading, column):
    """The EV row: a line per variant through its SAEs' values at their layers, in the registry's
    colour, the legend in the registry's order; the CE loss score row: the trained model's alone."""
    from matplotlib.colors import to_rgba

    from saerand import plots
    from saerand.variant_registry import VARIANTS as REGISTRY

    saved = {}
    monkeypatch.setattr(plots, "_save", lambda grid, path, provenance: saved.update(grid=grid))
    study = main_study(table, **STUDY)
    plots.figure3(study, "f3", {}, reading)
    grid = saved["grid"]

    def lines(metric):
        drawn = {}
        for line in grid.axes_dict[(metric, "m")].get_lines():
            if len(line.get_xdata()):
                [variant] = [v for v in REGISTRY.values() if to_rgba(v.colour) == to_rgba(line.get_color())]
                drawn[variant.name] = (list(line.get_xdata()), list(line.get_ydata()))
        return drawn

    expected = {
        variant: (rows["layer"].tolist(), pytest.approx(rows[column].tolist()))
        for variant, rows in study.sort_values("layer").groupby("variant")
    }
    assert lines("explained_variance") == expected
    assert lines("ce_loss_score") == {"trained": ([0, 1, 2], pytest.approx([0.5] * 3))}
    assert [text.get_text() for text in grid.legend.texts] == ["Trained", "Control"]
    assert grid.axes_dict[("l1", "m")].get_yscale() == "log"


def test_figure11_draws_the_mean_over_layers_against_expansion_per_variant(table, monkeypatch):
    from saerand import plots

    saved = {}
    monkeypatch.setattr(plots, "_save", lambda grid, path, provenance: saved.update(grid=grid))
    sweep = sweep_study(table, **SWEEP)
    plots.figure11(sweep, "f11", {}, "pooled")
    drawn = sorted(
        (list(line.get_xdata()), list(line.get_ydata()))
        for line in saved["grid"].axes_dict[("explained_variance", "m")].get_lines()
        if len(line.get_xdata())
    )
    means = sweep.groupby(["variant", "expansion_factor"])["explained_variance"].mean()
    expected = sorted(([2, 4], [means[v, 2], means[v, 4]]) for v in VARIANTS)
    assert [x for x, _ in drawn] == [x for x, _ in expected]
    assert [y for _, y in drawn] == [pytest.approx(y) for _, y in expected]
    assert saved["grid"].axes_dict[("explained_variance", "m")].get_xscale() == "log"
