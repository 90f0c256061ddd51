"""The TopK encoder with the top k taken before the ReLU (config `sae.topk_before_relu`).

sparsify's encoder applies ReLU to every pre-activation, a full pass over tokens x latents, and
then takes the top k. Taking the top k of the raw pre-activations and applying ReLU to those k
alone selects the same latents with the same values wherever a token has at least k positive
pre-activations (ties aside); a token with fewer gets the same zeros at other indices. The
backward pass is sparse, as sparsify's: gradients reach only the k selected latents, and only
those that are positive (ReLU's derivative; sparsify's passes a zero value's gradient on too).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sparsify.fused_encoder import EncoderOutput


class _TopKBeforeRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, k: int, relu_all: bool):
        pre_acts = F.linear(x, weight, bias)
        values, indices = pre_acts.topk(k, dim=-1, sorted=False)
        values = values.relu()
        if relu_all:  # AuxK reads the dead latents' pre-activations, as sparsify gives them: after ReLU
            pre_acts.relu_()
        ctx.save_for_backward(x, weight, indices, values > 0)
        return values, indices, pre_acts

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor, _grad_indices: Any, _grad_pre_acts: Any):
        x, weight, indices, active = ctx.saved_tensors
        grad_values = (grad_values * active).type_as(weight)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(indices, weight, mode="sum", per_sample_weights=grad_values)
        if ctx.needs_input_grad[1]:
            rows = (grad_values.unsqueeze(2) * x.unsqueeze(1)).reshape(-1, x.shape[1]).type_as(weight)
            grad_weight = torch.zeros_like(weight).index_add_(0, indices.flatten(), rows)
        if ctx.needs_input_grad[2]:
            grad_bias = weight.new_zeros(weight.shape[0]).index_add_(0, indices.flatten(), grad_values.flatten())
        return grad_x, grad_weight, grad_bias, None, None


def topk_before_relu(sae: Any, x: torch.Tensor, relu_all: bool = False) -> EncoderOutput:
    """`sae.encode(x)` (a sparsify SparseCoder) with the top k taken before the ReLU; `relu_all`:
    also return every pre-activation after ReLU, as AuxK needs (one more pass)."""
    if not sae.cfg.transcode:
        x = x - sae.b_dec
    return EncoderOutput(*_TopKBeforeRelu.apply(x, sae.encoder.weight, sae.encoder.bias, sae.cfg.k, relu_all))
