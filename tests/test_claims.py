import numpy as np
import pandas as pd
import pytest

from saerand.claims import claims_table
from saerand.study import SaeHyperparameters, SaeTarget

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


def _comparative_results():
    """Two models (small, large), three layers, five variants, each at the study's point (4, 2) and a
    sweep point (8, 2). EV: trained 0.8, re-randomised 0.78, step0 0.7 (L1 far off in the large
    model), control 0.5 falling 0.1 per layer while the others rise 0.02; AUROC: 0.8 falling 0.05
    per layer, 0.05 higher in the large model, the control 0.5 with the token explainer. At the
    sweep point the order of trained and the control flips."""
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 0.01, 400)
    ev = {"trained": 0.8, "rerandomized_incl_emb": 0.78, "step0": 0.7, "control": 0.5}
    results = {}
    for model, size_bonus in (("small", 0.0), ("large", 0.05)):
        for layer in range(3):
            for variant, base in ev.items():
                for point, flip in (((4, 2), False), ((8, 2), True)):
                    trend = -0.1 * layer if variant == "control" else 0.02 * layer
                    value = base + trend
                    if flip and variant in ("trained", "control"):
                        value = ev["control" if variant == "trained" else "trained"] + trend
                    l1 = {"trained": 10.0, "rerandomized_incl_emb": 10.5, "step0": 30.0 if model == "large" else 11.0}
                    auroc = 0.5 if variant == "control" else 0.8 - 0.05 * layer + size_bonus
                    points = {
                        "explained_variance": value,
                        "l1": l1.get(variant, 20.0),
                        "fuzz_auroc_tokens": auroc,
                    }
                    replicates = {
                        "explained_variance": value + shared,
                        "l1": l1.get(variant, 20.0) + shared,
                        "fuzz_auroc_tokens": auroc + rng.normal(0, 0.01, 400),
                    }
                    results[SaeTarget(model, variant, layer, *point)] = (points, replicates)
    return results


def test_the_papers_comparative_claims_hold_where_the_numbers_show_them():
    table = claims_table(
        _comparative_results(),
        METRICS,
        MARGINS,
        point=SaeHyperparameters(4, 2),
        parameters={"small": 7e7, "large": 7e9},
    )
    by = table.set_index(["model", "claim", "comparison", "metric", "layer"]).sort_index()
    closer = by.loc[("small", "random closer to trained than the control")]
    # |0.8 - 0.5| - |0.8 - 0.78| at layer 0; the control falls away with depth.
    first = closer.loc[("|trained - control| - |trained - rerandomized_incl_emb|", "explained_variance", 0)]
    assert first["estimate"] == pytest.approx(0.28) and first["holds"]
    assert first["paper_words"].startswith("we broadly found") and first["source"] == "Section 3.2"
    worsens = by.loc[("small", "control worsens with depth", "control: slope per layer", "explained_variance", "all")]
    assert worsens["estimate"] == pytest.approx(-0.1) and worsens["holds"]
    improves = by.loc[("small", "others improve with depth", "step0: slope per layer", "explained_variance", "all")]
    assert improves["estimate"] == pytest.approx(0.02) and improves["holds"]
    falls = by.loc[("large", "AUROC falls with depth", "trained: slope per layer", "fuzz_auroc_tokens", "all")]
    assert falls["estimate"] == pytest.approx(-0.05) and falls["holds"]
    # Step 0 is further from trained than the re-randomised variant is: in L1 only in the large model.
    step0 = "mean over layers of |trained - step0| - |trained - rerandomized_incl_emb|"
    l1 = {
        model: by.loc[(model, "re-randomised closer to trained than step0", step0, "l1", "all")]
        for model in ("small", "large")
    }
    assert l1["large"]["estimate"] == pytest.approx(19.5) and l1["large"]["holds"]
    assert l1["small"]["estimate"] == pytest.approx(0.5) and l1["small"]["holds"]
    # 0.05 over two decades of parameters.
    size = table[(table["claim"] == "AUROC rises with model size") & table["comparison"].str.startswith("trained")]
    assert size["estimate"].item() == pytest.approx(0.025) and size["holds"].item()
    assert "control" not in " ".join(table[table["claim"] == "AUROC rises with model size"]["comparison"])
    chance = table[table["claim"] == "control at chance for the null explainer"]
    assert len(chance) == 6 and chance["holds"].all() and chance["estimate"].abs().max() < 1e-12
    # The sweep point swaps trained and the control: the ordering claim fails there.
    ordering = table[table["claim"] == "variant ordering kept across the sweep"]
    assert set(ordering["comparison"].str.split(":").str[0]) == {"x8-k2"}
    assert not ordering["holds"].any() and (ordering["estimate"] < 0).all()
    # The study's own point only: no sweep SAE in the similarity rows.
    similar = table[table["claim"] == "trained and random similar"]
    assert similar["estimate"].abs().max() < 0.2


def _toy_table(gap_before: float, gap_after: float, seeds: int = 4) -> pd.DataFrame:
    """Frontiers where L1/sqrt(L2) = base * (1 + 1 - NRE): the control `gap_before` times the data
    before the MLP and `gap_after` times after; MMCS up to 0.95 at one grid cell."""
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        noise = 1 + rng.normal(0, 0.01)
        for kind, base in (
            ("inputs", 1.0),
            ("gaussian inputs", gap_before),
            ("outputs", 2.0),
            ("gaussian outputs", 2.0 * gap_after),
        ):
            for index, level in enumerate(np.linspace(0.2, 0.95, 8)):
                rows.append(
                    {
                        "kind": kind,
                        "n_latents": 64,
                        "l1_coefficient": 10.0**-index,
                        "seed": seed,
                        "one_minus_nre": level,
                        "l1_over_sqrt_l2": base * noise * (1 + level),
                        "mmcs": (0.95 if index == 3 else 0.5) + rng.normal(0, 0.005) if kind == "inputs" else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def test_section_4s_claims_at_matched_explained_variance():
    from saerand.toy.claims import matched_level, toy_claims

    table = _toy_table(gap_before=3.0, gap_after=1.2)
    assert matched_level(table, "l1_over_sqrt_l2") == pytest.approx((0.2 + 0.95) / 2)
    rows = pd.DataFrame(toy_claims(table, "superposition")).set_index("claim")
    sparser = rows.loc["superposed inputs sparser than their Gaussian control"]
    assert sparser["estimate"] == pytest.approx(2.0, rel=0.02) and sparser["holds"]
    shrinks = rows.loc["the gap shrinks after the random MLP"]
    assert shrinks["estimate"] == pytest.approx(1.8, rel=0.02) and shrinks["holds"]
    recovered = rows.loc["SAEs recover the features somewhere on the grid"]
    assert recovered["estimate"] == pytest.approx(0.05, abs=0.01) and recovered["holds"]
    assert "L1 coefficient 0.001" in recovered["comparison"]
    # No superposition: the control as sparse as the data, and no gap to shrink.
    flat = pd.DataFrame(toy_claims(_toy_table(gap_before=1.0, gap_after=1.0), "superposition")).set_index("claim")
    assert not flat.loc["superposed inputs sparser than their Gaussian control"]["holds"]
    assert not flat.loc["the gap shrinks after the random MLP"]["holds"]
