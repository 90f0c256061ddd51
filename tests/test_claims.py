import numpy as np
import pytest

from saerand.claims import claims_table
from saerand.config import SaeTarget

MARGINS = {"explained_variance": 0.05, "fuzz_auroc": 0.05}
METRICS = {"explained_variance": "explained_variance", "fuzz_auroc_tokens": "fuzz_auroc_tokens"}


def _result(ev, ev_noise, entropy, rng, auroc=0.7):
    """Point estimates and 400 replicates: EV replicates share the held-out resample (`ev_noise`)."""
    points = {"explained_variance": ev, "fuzz_auroc_tokens": auroc, "entropy_normalised": entropy}
    replicates = {
        "explained_variance": ev + ev_noise,
        "fuzz_auroc_tokens": auroc + rng.normal(0, 0.01, 400),
        "entropy_normalised": entropy + rng.normal(0, 0.005, 400),
    }
    return points, replicates


@pytest.fixture
def results():
    """Layer 0: random EV 0.01 below trained (similar); layer 1: 0.2 below (not). Entropy: control
    0.9, trained 0.5 -> 0.7 over depth, random 0.2."""
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.02, 400)  # the same resampled sequences for every SAE: paired
    results = {}
    for layer, (gap, trained_entropy) in enumerate([(0.01, 0.5), (0.2, 0.7)]):
        results[SaeTarget("m", "trained", layer, 4, 2)] = _result(0.9, shared, trained_entropy, rng)
        results[SaeTarget("m", "step0", layer, 4, 2)] = _result(0.9 - gap, shared * 1.01, 0.2, rng, auroc=0.69)
        results[SaeTarget("m", "control", layer, 4, 2)] = _result(0.95, shared, 0.9, rng, auroc=0.5)
    return results


def test_similarity_holds_where_the_paired_interval_lies_inside_the_margin(results):
    table = claims_table(results, METRICS, MARGINS).set_index(["layer", "metric", "comparison"])
    near = table.loc[(0, "explained_variance", "trained - step0")]
    assert near["estimate"] == pytest.approx(0.01) and near["holds"]
    # Paired: the shared resampling noise (sd 0.02) cancels, so the interval is narrow.
    assert near["high"] - near["low"] < 0.01
    assert not table.loc[(1, "explained_variance", "trained - step0")]["holds"]
    auroc = table.loc[(0, "fuzz_auroc_tokens", "trained - step0")]
    assert auroc["estimate"] == pytest.approx(0.01) and auroc["holds"]
    assert 0.04 < auroc["high"] - auroc["low"] < 0.07  # independent: sd 0.01 * sqrt(2), +-1.96 sd
    control = table.loc[(0, "fuzz_auroc_tokens", "trained - control")]
    assert control["estimate"] == pytest.approx(0.2) and not control["holds"]
    assert set(table.loc[(0, "explained_variance", "trained - control")][["claim"]]) == {"trained and control similar"}


def test_the_entropy_ordering_is_checked_per_model(results):
    table = claims_table(results, METRICS, MARGINS).set_index("claim")
    highest = table.loc["control has the highest token entropy"]
    assert highest["estimate"] == pytest.approx(0.2) and highest["holds"]  # 0.9 - max(0.7, 0.2) at layer 1
    lowest = table.loc["random variants have the lowest token entropy"]
    assert lowest["estimate"] == pytest.approx(0.3) and lowest["holds"]  # min(0.5, 0.9) - 0.2 at layer 0
    rising = table.loc["trained token entropy rises with depth"]
    assert rising["estimate"] == pytest.approx(0.2) and rising["holds"]


def test_an_ordering_the_results_contradict_fails(results):
    flipped = {
        sae: (
            {**points, "entropy_normalised": 1.0 - points["entropy_normalised"]},
            {**reps, "entropy_normalised": 1.0 - reps["entropy_normalised"]},
        )
        for sae, (points, reps) in results.items()
    }
    table = claims_table(flipped, METRICS, MARGINS).set_index("claim")
    assert not table.loc["control has the highest token entropy"]["holds"]
    assert not table.loc["random variants have the lowest token entropy"]["holds"]
    assert table.loc["trained token entropy rises with depth"]["estimate"] == pytest.approx(-0.2)
    assert not table.loc["trained token entropy rises with depth"]["holds"]
