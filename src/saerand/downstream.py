"""Downstream fidelity of an SAE: splice its reconstruction into the residual stream (SAEBench).

CE loss score = (CE_zero - CE_sae) / (CE_zero - CE_clean) and KL divergence score =
(KL_zero - KL_sae) / KL_zero, where "zero" replaces the output of block `layer` by zeros and KL is
KL(clean || patched) of the next-token distributions. As the paper notes, these only mean
something for the trained variant: a randomized model predicts text badly with or without the SAE.

With `special_token_ids` (SAEBench's `exclude_special_tokens_from_reconstruction`, which its core
evaluation runs with), the reconstruction is spliced in only where the input token is not one of
them (BOS/EOS/pad keep their own activations), and the losses count only those positions; zero
ablation still zeroes every position, as SAEBench's does. The held-out sequences' length is the
context of every pass (SAEBench's runs use 128).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .intervals import bootstrap, with_intervals
from .variants import SubjectModel


def _replace_block_output(block: torch.nn.Module, replace):
    def hook(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        new = replace(hidden).to(hidden.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return block.register_forward_hook(hook)


def spliced_reconstruction(sae, spliced: torch.Tensor):
    """The SAE's reconstruction where `spliced` (batch, position) is true, the input elsewhere."""

    def replace(hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1]).float()
        encoded = sae.encode(flat)
        reconstruction = sae.decode(encoded.top_acts, encoded.top_indices).reshape(hidden.shape)
        return torch.where(spliced[..., None], reconstruction, hidden.float())

    return replace


PARTS = ("ce_clean", "ce_with_sae", "ce_zero_ablation", "kl_with_sae", "kl_zero_ablation")
# name -> statistic over per-sequence sums (saerand.intervals): mean losses per predicted token, and the scores.
STATISTICS = {
    **{part: (lambda s, part=part: s[part] / s["tokens"]) for part in PARTS},
    "ce_loss_score": lambda s: (s["ce_zero_ablation"] - s["ce_with_sae"]) / (s["ce_zero_ablation"] - s["ce_clean"]),
    "kl_div_score": lambda s: (s["kl_zero_ablation"] - s["kl_with_sae"]) / s["kl_zero_ablation"],
}


@torch.no_grad()
def downstream_scores(
    subject: SubjectModel,
    sae,
    layer: int,
    sequences: np.ndarray,
    *,
    batch_sequences: int,
    resamples: int = 1,
    seed: int = 0,
    special_token_ids: Collection[int] = (),
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The scores with 95% intervals from `resamples` bootstrap resamples of the sequences, and the
    replicates (the same sequences and seed as saerand.metrics.evaluate_sae: paired replicates);
    positions holding `special_token_ids` are neither spliced nor counted (module docstring)."""
    block = subject.base.layers[layer]
    device = next(subject.model.parameters()).device
    per_sequence = {name: np.zeros(len(sequences)) for name in (*PARTS, "tokens")}
    for start in tqdm(range(0, len(sequences), batch_sequences), desc=f"CE/KL layers.{layer}"):
        ids = torch.from_numpy(sequences[start : start + batch_sequences]).long().to(device)
        inputs = subject.model_inputs(ids)  # one draw of control noise serves all three passes
        targets = ids[:, 1:]
        ordinary = ~torch.isin(ids, torch.tensor(sorted(special_token_ids), dtype=ids.dtype, device=device))
        counted = ordinary[:, :-1].double()  # a position counts where its input token is ordinary

        def log_probs(replace=None, inputs=inputs) -> torch.Tensor:
            handle = _replace_block_output(block, replace) if replace else None
            try:
                logits = subject.model(**inputs, use_cache=False).logits[:, :-1]
            finally:
                if handle:
                    handle.remove()
            return logits.float().log_softmax(-1)

        clean = log_probs()
        patched = log_probs(spliced_reconstruction(sae, ordinary))
        zeroed = log_probs(torch.zeros_like)
        rows = slice(start, start + len(ids))
        for name, lp in (("ce_clean", clean), ("ce_with_sae", patched), ("ce_zero_ablation", zeroed)):
            nll = -lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            per_sequence[name][rows] = (nll.double() * counted).sum(-1).cpu().numpy()
        for name, lp in (("kl_with_sae", patched), ("kl_zero_ablation", zeroed)):
            kl = F.kl_div(lp, clean, log_target=True, reduction="none").sum(-1)
            per_sequence[name][rows] = (kl.double() * counted).sum(-1).cpu().numpy()
        per_sequence["tokens"][rows] = counted.sum(-1).cpu().numpy()
    points, replicates = bootstrap(per_sequence, STATISTICS, resamples, seed)
    return with_intervals(points, replicates), replicates
