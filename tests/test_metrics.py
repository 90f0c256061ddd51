import numpy as np
import pytest
import torch

from saerand.intervals import resample_counts
from saerand.metrics import MetricAccumulator


def _accumulate(x, x_hat, acts, indices, num_latents=8, mean=None):
    """Metrics with each row its own unit."""
    accumulator = MetricAccumulator(num_latents, x.mean(0) if mean is None else mean, n_units=len(x))
    accumulator.update(x, x_hat, acts, indices, torch.arange(len(x)))
    return accumulator.result()[0]


def test_perfect_reconstruction():
    x = torch.randn(100, 6) + 3.0
    result = _accumulate(x, x.clone(), torch.ones(100, 2), torch.zeros(100, 2, dtype=torch.long))
    assert result["explained_variance"] == pytest.approx(1.0)
    assert result["cosine_similarity"] == pytest.approx(1.0)
    assert result["cosine_similarity_centered"] == pytest.approx(1.0)


def test_predicting_the_mean_explains_nothing():
    x = torch.randn(200, 6) + 3.0
    x_hat = x.mean(0).expand_as(x)
    result = _accumulate(x, x_hat, torch.ones(200, 2), torch.zeros(200, 2, dtype=torch.long))
    assert result["explained_variance"] == pytest.approx(0.0, abs=1e-9)
    # The raw cosine is high only because of the offset; centred, x_hat is the zero vector.
    assert result["cosine_similarity"] > 0.9
    assert result["cosine_similarity_centered"] == pytest.approx(0.0, abs=1e-6)


def test_half_the_variance():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    x_hat = x * torch.tensor([1.0, 0.0])  # keeps the first coordinate only
    result = _accumulate(x, x_hat, torch.ones(4, 1), torch.zeros(4, 1, dtype=torch.long))
    assert result["explained_variance"] == pytest.approx(0.5)
    # cos is 1 on the two rows along the first axis and 0 on the others.
    assert result["cosine_similarity"] == pytest.approx(0.5)


def test_sparsity_and_dead_latents():
    acts = torch.tensor([[2.0, 1.0, 0.0], [3.0, 0.0, 0.0]])  # TopK can pick zeros: not active
    indices = torch.tensor([[0, 1, 5], [2, 6, 7]])
    x = torch.randn(2, 4)
    result = _accumulate(x, x, acts, indices, num_latents=8)
    assert result["l0"] == pytest.approx(1.5)
    assert result["l1"] == pytest.approx(3.0)
    assert result["dead_fraction"] == pytest.approx(5 / 8)  # only latents 0, 1, 2 fired


def test_batches_accumulate_like_one_pass():
    x = torch.randn(300, 5)
    x_hat = x + 0.3 * torch.randn(300, 5)
    acts, idx = torch.rand(300, 3), torch.randint(0, 16, (300, 3))
    whole = _accumulate(x, x_hat, acts, idx, 16)
    accumulator = MetricAccumulator(16, x.mean(0), n_units=300)
    for s in range(0, 300, 64):
        accumulator.update(
            x[s : s + 64], x_hat[s : s + 64], acts[s : s + 64], idx[s : s + 64], torch.arange(s, min(s + 64, 300))
        )
    for key, value in accumulator.result()[0].items():
        assert value == pytest.approx(whole[key])


def test_pooled_explained_variance_of_a_resample_uses_the_resamples_own_mean():
    """A replicate's EV equals the EV computed directly on the resampled rows."""
    x = torch.randn(40, 3) * torch.tensor([1.0, 2.0, 0.5]) + 5.0
    x_hat = x + 0.4 * torch.randn(40, 3)
    accumulator = MetricAccumulator(4, x.double().mean(0), n_units=40)
    accumulator.update(x, x_hat, torch.ones(40, 1), torch.zeros(40, 1, dtype=torch.long), torch.arange(40))
    _, replicates = accumulator.result(resamples=3, seed=5)
    for counts, replicate in zip(resample_counts(40, 3, 5), replicates["explained_variance"]):
        rows = torch.from_numpy(np.repeat(np.arange(40), counts))
        xs, hs = x[rows].double(), x_hat[rows].double()
        direct = 1 - (xs - hs).pow(2).sum() / (xs - xs.mean(0)).pow(2).sum()
        assert replicate == pytest.approx(direct.item(), rel=1e-9)


def test_no_tokens_is_an_error():
    with pytest.raises(ValueError, match="no held-out tokens"):
        MetricAccumulator(4, torch.zeros(3), n_units=2).result()


def test_masked_per_token_metrics_leave_out_special_positions():
    """SAEBench's reading: per-token EV averaged over non-special tokens, with their own mean."""
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0], [100.0, 100.0]])
    x_hat = torch.tensor([[1.0, 0.0], [-0.5, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    keep = torch.tensor([True, True, True, True, False])  # the last row is an EOS position
    accumulator = MetricAccumulator(4, x.mean(0), masked_mean=x[keep].mean(0), n_units=5)
    ones, zeros = torch.ones(5, 1), torch.zeros(5, 1, dtype=torch.long)
    accumulator.update(x, x_hat, ones, zeros, torch.arange(5), keep)
    result = accumulator.result()[0]
    # Kept mean is 0: per-token EV 1, 1 - 0.25, 1, 0 -> 0.6875; cosines 1, 1, 1, 0 (zero x_hat).
    assert result["explained_variance_masked_per_token"] == pytest.approx(0.6875)
    assert result["cosine_similarity_masked"] == pytest.approx(0.75)
    assert result["n_tokens_masked_metrics"] == 4 and result["n_tokens"] == 5
    # Pooled over every position, the EOS row's error dominates.
    assert result["explained_variance"] < 0.55


def test_kept_positions_mask_special_tokens():
    from saerand.metrics import kept_positions

    tokens = np.array([[0, 5, 6], [0, 7, 1]])
    assert kept_positions(tokens, [0, 1]).tolist() == [False, True, True, False, True, False]
    assert kept_positions(tokens, []).all()
