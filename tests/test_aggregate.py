import json

import pytest
from PIL import Image

from saerand.aggregate import main_study, metrics_table, sweep_study
from saerand.plots import figure3, figure11

VARIANTS = ["trained", "control"]
CONFIG = {
    "models": {"m": {"n_layers": 3, "layers": "all"}},
    "sae": {"expansion_factor": 4, "k": 2},
    "sweep": {"models": ["m"], "layers": [1, 2], "expansion_factors": [2, 4], "k": [2]},
}


def _write(tmp_path, variant, layer, expansion, k, ev):
    path = tmp_path / f"{variant}-{layer}-{expansion}-{k}.json"
    metrics = {"explained_variance": ev, "cosine_similarity": ev, "l1": 3.0, "ce_loss_score": 0.5}
    path.write_text(json.dumps({"model": "m", "variant": variant, "layer": layer, "metrics": metrics,
                                "sae": {"num_latents": 8 * expansion, "expansion_factor": expansion, "k": k}}))
    return path


@pytest.fixture
def table(tmp_path):
    paths = [_write(tmp_path, v, layer, 4, 2, 0.9 - 0.1 * layer) for v in VARIANTS for layer in range(3)]
    paths += [_write(tmp_path, v, layer, 2, 2, 0.8 - 0.1 * layer) for v in VARIANTS for layer in (1, 2)]
    return metrics_table(paths[::-1])


def test_metrics_table_is_tidy_and_sorted(table):
    assert len(table) == 10
    assert table[["variant", "layer", "expansion_factor"]].values.tolist()[:3] == [
        ["control", 0, 4], ["control", 1, 2], ["control", 1, 4]]
    assert table["ce_score_meaningful"].tolist() == (table["variant"] == "trained").tolist()


def test_duplicate_saes_are_refused(tmp_path):
    paths = [_write(tmp_path, "trained", 0, 4, 2, 0.9), _write(tmp_path / "..", "trained", 0, 4, 2, 0.8)]
    with pytest.raises(ValueError, match="duplicate SAEs"):
        metrics_table(paths)


def test_study_and_sweep_selections(table):
    assert sorted(main_study(table, CONFIG)["layer"]) == [0, 0, 1, 1, 2, 2]
    sweep = sweep_study(table, CONFIG)
    assert sorted(zip(sweep["layer"], sweep["expansion_factor"])) == sorted([(1, 2), (1, 4), (2, 2), (2, 4)] * 2)


def test_figures_carry_provenance(table, tmp_path):
    figure3(main_study(table, CONFIG), tmp_path / "f3.png", {"seed": 7})
    figure11(sweep_study(table, CONFIG), tmp_path / "f11.png", {"seed": 8})
    for name, seed in (("f3.png", 7), ("f11.png", 8)):
        image = Image.open(tmp_path / name)
        assert image.size[0] > 300 and json.loads(image.text["Description"])["seed"] == seed
    with pytest.raises(ValueError, match="one SAE per"):
        figure3(table, tmp_path / "mixed.png", {})
