"""One toy sweep: its four dataset kinds (Gaussian control per dimension or scalar), the loss
convention it trains under, and the config keys that choose both."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from saerand.config import SCHEMA, ConfigError, validate_config
from saerand.settings import ToySaeSettings, ToySettings, section_settings
from saerand.toy.data import sharkey_data
from saerand.toy.sweep import KINDS, dataset_kinds, sweep

from .conftest import REPO


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _inputs() -> np.ndarray:
    """Superposed data with dimensions of very different scale, so the two controls differ."""
    data, _ = sharkey_data(4000, n_features=32, n_dims=16, seed=0)
    return data * np.geomspace(0.1, 10, 16, dtype=np.float32)


def test_gaussian_control_per_dimension_matches_each_dimension():
    inputs = _inputs()
    control = dataset_kinds(inputs, seed=0, control="per_dimension")["gaussian inputs"]
    np.testing.assert_allclose(control.std(0), inputs.std(0), rtol=0.06)
    np.testing.assert_allclose(control.mean(0), inputs.mean(0), atol=0.05 * inputs.std(0).max())


def test_gaussian_control_scalar_matches_one_mean_and_std_over_all_values():
    inputs = _inputs()
    kinds = dataset_kinds(inputs, seed=0, control="scalar")
    control = kinds["gaussian inputs"]
    assert control.mean() == pytest.approx(inputs.mean(), abs=0.02 * float(inputs.std()))
    assert control.std() == pytest.approx(inputs.std(), rel=0.02)
    # One std for every dimension, where the data's spread 100-fold.
    assert control.std(0).max() / control.std(0).min() < 1.15
    assert inputs.std(0).max() / inputs.std(0).min() > 50
    assert list(kinds) == list(KINDS)
    np.testing.assert_array_equal(kinds["inputs"], inputs)


def test_dataset_kinds_rejects_an_unknown_control():
    with pytest.raises(ValueError, match="control"):
        dataset_kinds(_inputs(), seed=0, control="diagonal")


def _sae(loss: str) -> ToySaeSettings:
    coefficients = {"low": 0.1, "high": 0.1, "n": 1}
    sae = {"epochs": 2, "batch_size": 64, "lr": 3e-3, "loss": loss, "l1_coefficients": coefficients}
    return section_settings(ToySettings, "toy", sae=sae).sae


def test_sweep_trains_under_the_configured_loss_and_reports_one_minus_nre_and_explained_variance():
    inputs, features = sharkey_data(300, n_features=16, n_dims=8, seed=0)
    kinds = {"inputs": inputs}
    summed = sweep(kinds, [16], _sae("summed_squared_error"), seed=0, ground_truth=features)
    standardized = sweep(kinds, [16], _sae("standardized_mean_squared_error"), seed=0, ground_truth=features)
    for table in (summed, standardized):
        assert {"one_minus_nre", "explained_variance", "mmcs"} <= set(table.columns)
    assert summed["l1"].iloc[0] != pytest.approx(standardized["l1"].iloc[0], rel=0.01)


@pytest.fixture()
def demo() -> dict:
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def test_toy_loss_and_gaussian_control_defaults(demo):
    toy = validate_config(demo, SCHEMA)["toy"]
    assert toy["sae"]["loss"] == "standardized_mean_squared_error"
    assert toy["gaussian_control"] == "scalar"


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("sae", "loss", "mse"),
        (None, "gaussian_control", "diagonal"),
    ],
)
def test_bad_toy_choices_name_their_key(demo, section, key, value):
    bad = copy.deepcopy(demo)
    (bad["toy"][section] if section else bad["toy"])[key] = value
    with pytest.raises(ConfigError) as error:
        validate_config(bad, SCHEMA)
    where = f"toy.{section}.{key}" if section else f"toy.{key}"
    assert str(error.value).startswith(f"config key '{where}': '{value}' is not one of")


def test_a_killed_sweep_resumes_point_by_point_and_equals_one_pass(tmp_path, monkeypatch):
    import saerand.toy.sweep as sweep_module
    from saerand.progress import JsonLinesLog

    inputs, features = sharkey_data(300, n_features=16, n_dims=8, seed=0)
    kinds = {"inputs": inputs, "outputs": inputs[:, ::-1].copy()}
    sae = section_settings(
        ToySettings,
        "toy",
        sae={"epochs": 1, "batch_size": 64, "lr": 3e-3, "l1_coefficients": {"low": 0.01, "high": 0.1, "n": 2}},
    ).sae
    whole = sweep(kinds, [16], sae, seed=0, ground_truth=features)
    log_path = tmp_path / "points.jsonl"
    sweep(kinds, [16], sae, seed=0, ground_truth=features, progress=JsonLinesLog(log_path, key=sweep_module.grid_point))
    # Killed after two points, while writing the third.
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:2]) + lines[2][:25])
    trained = []
    train = sweep_module.train_l1_sae
    monkeypatch.setattr(
        sweep_module, "train_l1_sae", lambda data, n, c, **kw: trained.append(c) or train(data, n, c, **kw)
    )
    resumed = sweep(
        kinds, [16], sae, seed=0, ground_truth=features, progress=JsonLinesLog(log_path, key=sweep_module.grid_point)
    )
    assert len(trained) == 2  # the two points not logged whole
    pd.testing.assert_frame_equal(resumed, whole)
