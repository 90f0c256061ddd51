"""SAE quality metrics on held-out activations, accumulated batch by batch.

explained_variance: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the whole held-out set.
cosine_similarity: mean over tokens of cos(x, x_hat); a large mean offset inflates it, so
cosine_similarity_centered uses x - mean and x_hat - mean. l0 / l1: mean per token of the count /
sum of the latent activations. dead_fraction: latents never active on the held-out set (not
sparsify's dead_pct, which counts latents silent for 10M training tokens).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .cache import ActivationCache


class MetricAccumulator:
    def __init__(self, num_latents: int, mean: torch.Tensor):
        self.mean = mean.double()
        self.num_latents = num_latents
        self.n = 0
        self.sse = 0.0
        self.sst = 0.0
        self.cos = 0.0
        self.cos_centered = 0.0
        self.l0 = 0.0
        self.l1 = 0.0
        self.fired = torch.zeros(num_latents, dtype=torch.bool)

    def update(self, x: torch.Tensor, x_hat: torch.Tensor, latent_acts: torch.Tensor, latent_indices: torch.Tensor) -> None:
        """x, x_hat: (n, d); latent_acts / latent_indices: (n, k) as SparseCoder.encode returns them."""
        x, x_hat = x.double(), x_hat.double()
        mean = self.mean.to(x.device)
        self.n += len(x)
        self.sse += (x - x_hat).pow(2).sum().item()
        self.sst += (x - mean).pow(2).sum().item()
        self.cos += torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).sum().item()
        self.cos_centered += torch.nn.functional.cosine_similarity(x - mean, x_hat - mean, dim=-1).sum().item()
        active = latent_acts > 0
        self.l0 += active.sum().item()
        self.l1 += latent_acts.abs().double().sum().item()
        self.fired[latent_indices[active].cpu()] = True

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no held-out tokens were evaluated")
        return {
            "explained_variance": 1.0 - self.sse / self.sst,
            "fvu": self.sse / self.sst,
            "cosine_similarity": self.cos / self.n,
            "cosine_similarity_centered": self.cos_centered / self.n,
            "l0": self.l0 / self.n,
            "l1": self.l1 / self.n,
            "dead_fraction": 1.0 - self.fired.float().mean().item(),
            "n_tokens": self.n,
        }


def column_mean(cache: ActivationCache, layer: int, batch_rows: int) -> torch.Tensor:
    total = torch.zeros(cache.d_model, dtype=torch.float64)
    for batch in cache.batches(layer, batch_rows):
        total += batch.double().sum(0)
    return total / cache.n_tokens


@torch.no_grad()
def evaluate_sae(sae, cache: ActivationCache, layer: int, *, batch_rows: int, device: str = "cpu") -> dict[str, float]:
    accumulator = MetricAccumulator(sae.num_latents, column_mean(cache, layer, batch_rows))
    for batch in tqdm(cache.batches(layer, batch_rows), desc=f"evaluating layers.{layer}"):
        x = batch.to(device)
        encoded = sae.encode(x)
        x_hat = sae.decode(encoded.top_acts, encoded.top_indices)
        accumulator.update(x, x_hat, encoded.top_acts, encoded.top_indices)
    return accumulator.result()
