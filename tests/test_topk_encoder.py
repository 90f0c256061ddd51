from dataclasses import replace

import pytest
import torch
from sparsify import SparseCoder, SparseCoderConfig

from saerand.sae_training import SaeTrainer
from saerand.settings import SaeSettings, section_settings
from saerand.topk_encoder import topk_before_relu


def _sae(bias: float) -> SparseCoder:
    torch.manual_seed(0)
    sae = SparseCoder(16, SparseCoderConfig(expansion_factor=8, k=4), "cpu", dtype=torch.float32)
    with torch.no_grad():
        sae.encoder.bias.fill_(bias)
    return sae


def _encode_and_backward(sae: SparseCoder, encode, x: torch.Tensor):
    sae.zero_grad()
    x = x.clone().requires_grad_(True)
    out = encode(x)
    order = out.top_indices.argsort(dim=-1)
    (out.top_acts * torch.linspace(1, 2, out.top_acts.numel()).view_as(out.top_acts)).sum().backward()
    grads = [x.grad, sae.encoder.weight.grad, sae.encoder.bias.grad]
    return out.top_indices.gather(-1, order), out.top_acts.gather(-1, order), out.pre_acts, grads


def test_with_k_positive_pre_activations_it_is_sparsifys_encoder_forward_and_backward():
    """A large bias makes every pre-activation positive: the same latents, values, ReLU'd
    pre-activations (for AuxK) and gradients as sparsify's fused encoder."""
    sae, x = _sae(bias=10.0), torch.randn(32, 16)
    ours = _encode_and_backward(sae, lambda x: topk_before_relu(sae, x, relu_all=True), x)
    sparsify = _encode_and_backward(sae, sae.encode, x)
    torch.testing.assert_close(ours[0], sparsify[0], rtol=0, atol=0)
    for mine, theirs in zip([ours[1], ours[2], *ours[3]], [sparsify[1], sparsify[2], *sparsify[3]]):
        torch.testing.assert_close(mine, theirs)


def test_a_token_with_fewer_positive_pre_activations_gets_zeros_and_no_gradient_through_them():
    sae, x = _sae(bias=-10.0), torch.randn(8, 16)  # every pre-activation negative
    indices, values, pre_acts, grads = _encode_and_backward(sae, lambda x: topk_before_relu(sae, x), x)
    assert (values == 0).all() and (pre_acts < 0).all()  # raw pre-activations without relu_all
    assert all((grad == 0).all() for grad in grads)


def test_the_trainer_uses_it_when_asked_and_trains():
    settings = section_settings(
        SaeSettings, "sae", expansion_factor=4, k=4, batch_size=4, optimizer="signum", device="cpu"
    )
    batches = [torch.randn(128, 16) for _ in range(6)]
    default, early = (SaeTrainer(16, replace(settings, topk_before_relu=flag), num_steps=6) for flag in (False, True))
    assert early.sae.encode.func is topk_before_relu and "encode" not in vars(default.sae)
    for trainer in (default, early):
        trainer.train_on(batches)
    assert early.fvu_trace == pytest.approx(default.fvu_trace, abs=0.05)
