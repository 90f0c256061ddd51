"""SAE quality metrics on held-out activations, accumulated batch by batch.

explained_variance: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 pooled over the whole held-out
set, every position included (sparsify's FVU, over all held-out tokens). cosine_similarity: mean
over tokens of cos(x, x_hat); a large mean offset inflates it, so cosine_similarity_centered uses
x - mean and x_hat - mean. l0 / l1: mean per token of the count / sum of the latent activations.
dead_fraction: latents never active on the held-out set (not sparsify's dead_pct, which counts
latents silent for 10M training tokens).

SAEBench's reading (Karvonen et al. 2024, which the paper's evaluation builds on): special-token
positions (BOS/EOS/pad, where trained Pythia's residual norms are very large) are masked out, and
EV is a per-token ratio 1 - ||x - x_hat||^2 / ||x - mean||^2 averaged over the kept tokens, with
the mean of the kept tokens: explained_variance_masked_per_token and cosine_similarity_masked.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import ActivationCache


class MetricAccumulator:
    def __init__(self, num_latents: int, mean: torch.Tensor, masked_mean: torch.Tensor | None = None):
        self.mean = mean.double()
        self.masked_mean = self.mean if masked_mean is None else masked_mean.double()
        self.num_latents = num_latents
        self.n = 0
        self.n_kept = 0
        self.sse = 0.0
        self.sst = 0.0
        self.cos = 0.0
        self.cos_centered = 0.0
        self.ev_per_token_kept = 0.0
        self.cos_kept = 0.0
        self.l0 = 0.0
        self.l1 = 0.0
        self.fired = torch.zeros(num_latents, dtype=torch.bool)

    def update(
        self, x: torch.Tensor, x_hat: torch.Tensor, latent_acts: torch.Tensor, latent_indices: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> None:
        """x, x_hat: (n, d); latent_acts / latent_indices: (n, k) as SparseCoder.encode returns them;
        keep: (n,) bool, the positions the masked metrics count (None: all)."""
        x, x_hat = x.double(), x_hat.double()
        mean = self.mean.to(x.device)
        self.n += len(x)
        self.sse += (x - x_hat).pow(2).sum().item()
        self.sst += (x - mean).pow(2).sum().item()
        cosines = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1)
        self.cos += cosines.sum().item()
        self.cos_centered += torch.nn.functional.cosine_similarity(x - mean, x_hat - mean, dim=-1).sum().item()
        keep = torch.ones(len(x), dtype=torch.bool, device=x.device) if keep is None else keep.to(x.device)
        kept, kept_hat = x[keep], x_hat[keep]
        self.n_kept += len(kept)
        per_token = 1 - (kept - kept_hat).pow(2).sum(-1) / (kept - self.masked_mean.to(x.device)).pow(2).sum(-1)
        self.ev_per_token_kept += per_token.sum().item()
        self.cos_kept += cosines[keep].sum().item()
        active = latent_acts > 0
        self.l0 += active.sum().item()
        self.l1 += latent_acts.abs().double().sum().item()
        self.fired[latent_indices[active].cpu()] = True

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no held-out tokens were evaluated")
        kept = self.n_kept or float("nan")
        return {
            "explained_variance": 1.0 - self.sse / self.sst,
            "fvu": self.sse / self.sst,
            "cosine_similarity": self.cos / self.n,
            "cosine_similarity_centered": self.cos_centered / self.n,
            "explained_variance_masked_per_token": self.ev_per_token_kept / kept,
            "cosine_similarity_masked": self.cos_kept / kept,
            "l0": self.l0 / self.n,
            "l1": self.l1 / self.n,
            "dead_fraction": 1.0 - self.fired.float().mean().item(),
            "n_tokens": self.n,
            "n_tokens_masked_metrics": self.n_kept,
        }


def column_means(cache: ActivationCache, layer: int, batch_rows: int, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean activation over all held-out positions and over the kept (non-special) ones."""
    total = torch.zeros(cache.d_model, dtype=torch.float64)
    kept = torch.zeros(cache.d_model, dtype=torch.float64)
    start = 0
    for batch in cache.batches(layer, batch_rows):
        batch = batch.double()
        total += batch.sum(0)
        kept += batch[keep[start : start + len(batch)]].sum(0)
        start += len(batch)
    return total / cache.n_tokens, kept / max(1, int(keep.sum()))


def kept_positions(tokens: np.ndarray, special_token_ids: list[int]) -> torch.Tensor:
    """(n_tokens,) bool over the cache's rows: True where the token is not a special token."""
    return torch.from_numpy(~np.isin(tokens.reshape(-1), special_token_ids))


@torch.no_grad()
def evaluate_sae(
    sae, cache: ActivationCache, layer: int, *, batch_rows: int, special_token_ids: list[int], device: str = "cpu"
) -> dict[str, float]:
    """Every metric of one SAE on `layer` of the held-out cache; `special_token_ids` are masked
    out of the masked metrics."""
    keep = kept_positions(cache.tokens(), special_token_ids)
    accumulator = MetricAccumulator(sae.num_latents, *column_means(cache, layer, batch_rows, keep))
    start = 0
    for batch in tqdm(cache.batches(layer, batch_rows), desc=f"evaluating layers.{layer}"):
        x = batch.to(device)
        encoded = sae.encode(x)
        x_hat = sae.decode(encoded.top_acts, encoded.top_indices)
        accumulator.update(x, x_hat, encoded.top_acts, encoded.top_indices, keep[start : start + len(x)])
        start += len(x)
    return accumulator.result()
