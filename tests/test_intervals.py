import numpy as np
import pytest
import torch

from saerand.intervals import bootstrap, bootstrap_mean, percentile_interval, resample_counts
from saerand.metrics import MetricAccumulator


def test_resamples_draw_every_unit_count_times_and_are_seeded():
    counts = resample_counts(30, 100, seed=4)
    assert counts.shape == (100, 30) and (counts.sum(1) == 30).all()
    np.testing.assert_array_equal(counts, resample_counts(30, 100, seed=4))
    assert not np.array_equal(counts, resample_counts(30, 100, seed=5))


def test_a_mean_interval_covers_the_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = []
    for draw in range(400):
        values = rng.exponential(2.0, size=60)  # skewed: mean 2
        _, replicates = bootstrap_mean(values, resamples=400, seed=draw)
        low, high = percentile_interval(replicates)
        covered.append(low <= 2.0 <= high)
    assert 0.90 <= np.mean(covered) <= 0.98


def test_resampling_sequences_covers_where_resampling_tokens_would_not():
    """Tokens of one sequence share its level (a per-sequence effect, as in real text): the
    interval over sequences keeps ~95% coverage of the true mean L1; one over tokens is far too narrow."""
    rng = np.random.default_rng(1)
    n_sequences, context, true_l1 = 40, 32, 10.0
    covered, widths_seq, widths_tok = [], [], []
    for draw in range(150):
        level = true_l1 + rng.normal(0, 3.0, size=n_sequences)
        acts = torch.from_numpy(np.repeat(level, context) + rng.normal(0, 1.0, size=n_sequences * context))
        acts, indices = acts.unsqueeze(1), torch.zeros(len(acts), 1, dtype=torch.long)  # one latent, k = 1
        x = torch.zeros(len(acts), 2)
        by_sequence = MetricAccumulator(1, torch.zeros(2), n_units=n_sequences)
        by_sequence.update(x, x, acts, indices, torch.arange(len(acts)) // context)
        metrics, _ = by_sequence.result(resamples=300, seed=draw)
        covered.append(metrics["l1_low"] <= true_l1 <= metrics["l1_high"])
        widths_seq.append(metrics["l1_high"] - metrics["l1_low"])
        by_token = MetricAccumulator(1, torch.zeros(2), n_units=len(acts))
        by_token.update(x, x, acts, indices, torch.arange(len(acts)))
        token_metrics, _ = by_token.result(resamples=300, seed=draw)
        widths_tok.append(token_metrics["l1_high"] - token_metrics["l1_low"])
    assert 0.88 <= np.mean(covered) <= 0.99
    assert np.mean(widths_tok) < 0.5 * np.mean(widths_seq)


def test_statistics_see_weighted_sums_and_unequal_units_are_refused():
    points, replicates = bootstrap({"a": np.array([1.0, 3.0])}, {"total": lambda s: s["a"]}, resamples=5, seed=0)
    assert points["total"] == 4.0 and set(replicates["total"]) <= {2.0, 4.0, 6.0}
    with pytest.raises(ValueError, match="different lengths"):
        bootstrap({"a": np.ones(2), "b": np.ones(3)}, {}, resamples=2, seed=0)
