from types import SimpleNamespace

import numpy as np
import pytest
import torch

from saerand.downstream import downstream_scores, spliced_reconstruction
from saerand.variants import SubjectModel


class ReconstructionDouble:
    """Test double for an SAE: reconstructs `scale` times its input (1: perfect, 0: zeros)."""

    def __init__(self, scale: float):
        self.scale = scale

    def encode(self, x):
        return SimpleNamespace(top_acts=x, top_indices=None)

    def decode(self, top_acts, top_indices):
        return self.scale * top_acts


def test_perfect_reconstruction_scores_one(tiny_neox, token_ids):
    scores, _ = downstream_scores(
        SubjectModel(tiny_neox, "trained"), ReconstructionDouble(1.0), 1, token_ids, batch_sequences=10
    )
    assert scores["ce_with_sae"] == pytest.approx(scores["ce_clean"], abs=1e-5)
    assert scores["ce_loss_score"] == pytest.approx(1.0, abs=1e-3)
    assert scores["kl_with_sae"] == pytest.approx(0.0, abs=1e-6)
    assert scores["kl_div_score"] == pytest.approx(1.0, abs=1e-3)
    ids = torch.from_numpy(token_ids).long()
    assert scores["ce_clean"] == pytest.approx(tiny_neox(input_ids=ids, labels=ids).loss.item(), rel=1e-5)


def test_zero_reconstruction_scores_zero(tiny_neox, token_ids):
    scores, _ = downstream_scores(
        SubjectModel(tiny_neox, "trained"), ReconstructionDouble(0.0), 0, token_ids, batch_sequences=7
    )
    assert scores["ce_with_sae"] == pytest.approx(scores["ce_zero_ablation"])
    assert scores["ce_loss_score"] == pytest.approx(0.0, abs=1e-6)
    assert scores["kl_div_score"] == pytest.approx(0.0, abs=1e-6)
    assert scores["kl_zero_ablation"] > 0


def test_partial_reconstruction_lies_between(tiny_neox, token_ids):
    subject = SubjectModel(tiny_neox, "control", noise_seed=0)  # noise inputs are shared by all passes
    scores = downstream_scores(subject, ReconstructionDouble(0.9), 2, token_ids, batch_sequences=24)[0]
    assert 0.0 < scores["kl_div_score"] < 1.0
    assert scores["kl_with_sae"] < scores["kl_zero_ablation"]


def test_intervals_over_sequences_hold_the_estimate_whatever_the_batch_size(tiny_neox, token_ids):
    subject = SubjectModel(tiny_neox, "trained")
    scores, replicates = downstream_scores(
        subject, ReconstructionDouble(0.9), 2, token_ids, batch_sequences=24, resamples=200, seed=3
    )
    for name in ("ce_loss_score", "kl_div_score", "ce_clean"):
        assert scores[f"{name}_low"] < scores[name] < scores[f"{name}_high"]
        assert replicates[name].shape == (200,)
    again, _ = downstream_scores(
        subject, ReconstructionDouble(0.9), 2, token_ids, batch_sequences=5, resamples=200, seed=3
    )
    for name, value in scores.items():
        assert again[name] == pytest.approx(value, rel=1e-5)


def test_special_tokens_keep_their_activations_and_are_not_counted(tiny_neox, token_ids):
    """SAEBench's exclude_special_tokens_from_reconstruction: with a token marked special, the
    zero reconstruction is spliced in only at other positions, and only the positions whose input
    is ordinary count; marking no token present changes nothing."""
    subject = SubjectModel(tiny_neox, "trained")
    every = downstream_scores(subject, ReconstructionDouble(0.0), 1, token_ids, batch_sequences=10)[0]
    absent = int(token_ids.max()) + 1
    unchanged = downstream_scores(
        subject, ReconstructionDouble(0.0), 1, token_ids, batch_sequences=10, special_token_ids=[absent]
    )[0]
    assert unchanged == pytest.approx(every)
    frequent = int(np.bincount(token_ids.reshape(-1)).argmax())
    excluded = downstream_scores(
        subject, ReconstructionDouble(0.0), 1, token_ids, batch_sequences=10, special_token_ids=[frequent]
    )[0]
    # By hand: the clean loss over the positions whose input is not `frequent`.
    ids = torch.from_numpy(token_ids).long()
    with torch.no_grad():
        logits = tiny_neox(input_ids=ids).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    ordinary = ids[:, :-1] != frequent
    assert excluded["ce_clean"] == pytest.approx(nll[ordinary].mean().item(), rel=1e-5)


def test_the_reconstruction_is_spliced_in_only_where_asked():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    spliced = torch.tensor([[True, False, True], [False, False, True]])
    patched = spliced_reconstruction(ReconstructionDouble(0.0), spliced)(hidden)
    assert (patched[spliced] == 0).all() and torch.equal(patched[~spliced], hidden[~spliced])
