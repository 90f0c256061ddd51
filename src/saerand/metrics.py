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

Every metric but dead_fraction (a property of the whole set) comes with a 95% bootstrap interval over
held-out sequences (saerand.intervals): the parts of each metric are summed per sequence.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import ActivationCache
from .intervals import bootstrap, with_intervals

# Per held-out sequence sums (saerand.intervals resamples whole sequences).
_UNIT_SUMS = ("n", "sse", "centered_sq", "cos", "cos_centered", "n_kept", "ev_per_token_kept", "cos_kept", "l0", "l1")


def _pooled_explained_variance(s: dict) -> np.ndarray:
    """1 - SSE / SST, SST about the mean of the (re)sampled tokens: sum ||x - m0||^2 - ||sum (x - m0)||^2 / n
    for the held-out mean m0 (the offset sum is zero for the whole set)."""
    sst = s["centered_sq"] - (s["offset"] ** 2).sum(-1) / s["n"]
    return 1.0 - s["sse"] / sst


# name -> statistic over the sums; the same definitions give the estimate and its replicates.
STATISTICS = {
    "explained_variance": _pooled_explained_variance,
    "fvu": lambda s: 1.0 - _pooled_explained_variance(s),
    "cosine_similarity": lambda s: s["cos"] / s["n"],
    "cosine_similarity_centered": lambda s: s["cos_centered"] / s["n"],
    "explained_variance_masked_per_token": lambda s: s["ev_per_token_kept"] / s["n_kept"],
    "cosine_similarity_masked": lambda s: s["cos_kept"] / s["n_kept"],
    "l0": lambda s: s["l0"] / s["n"],
    "l1": lambda s: s["l1"] / s["n"],
}


class MetricAccumulator:
    """Sums of every metric's parts per held-out unit (sequence), so that each metric comes with a
    bootstrap interval over units."""

    def __init__(self, num_latents: int, mean: torch.Tensor, masked_mean: torch.Tensor | None = None, *, n_units: int):
        self.mean = mean.double()
        self.masked_mean = self.mean if masked_mean is None else masked_mean.double()
        self.num_latents = num_latents
        self.sums = {name: torch.zeros(n_units, dtype=torch.float64) for name in _UNIT_SUMS}
        self.offset = torch.zeros(n_units, len(self.mean), dtype=torch.float64)
        self.fired = torch.zeros(num_latents, dtype=torch.bool)

    def update(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        latent_acts: torch.Tensor,
        latent_indices: torch.Tensor,
        units: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> None:
        """x, x_hat: (n, d); latent_acts / latent_indices: (n, k) as SparseCoder.encode returns them;
        units: (n,) the held-out unit (sequence) of each row; keep: (n,) bool, the positions the
        masked metrics count (None: all)."""
        x, x_hat = x.double(), x_hat.double()
        mean = self.mean.to(x.device)
        keep = torch.ones(len(x), dtype=torch.bool, device=x.device) if keep is None else keep.to(x.device)
        cosines = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1)
        per_token = 1 - (x - x_hat).pow(2).sum(-1) / (x - self.masked_mean.to(x.device)).pow(2).sum(-1)
        active = latent_acts > 0
        rows = {
            "n": torch.ones(len(x), dtype=torch.float64, device=x.device),
            "sse": (x - x_hat).pow(2).sum(-1),
            "centered_sq": (x - mean).pow(2).sum(-1),
            "cos": cosines,
            "cos_centered": torch.nn.functional.cosine_similarity(x - mean, x_hat - mean, dim=-1),
            "n_kept": keep.double(),
            "ev_per_token_kept": torch.where(keep, per_token, 0.0),
            "cos_kept": torch.where(keep, cosines, 0.0),
            "l0": active.sum(-1).double(),
            "l1": latent_acts.abs().double().sum(-1),
        }
        # Summed per unit where the batch is (a GPU): only the per-unit sums ever cross to the host.
        self.sums = {name: values.to(x.device) for name, values in self.sums.items()}
        self.offset = self.offset.to(x.device)
        units = units.to(x.device)
        for name, values in rows.items():
            self.sums[name].index_add_(0, units, values)
        self.offset.index_add_(0, units, x - mean)
        self.fired[latent_indices[active].cpu()] = True

    def result(self, resamples: int = 1, seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Every metric with its 95% interval (`<metric>_low`, `_high`) over units, and the replicates."""
        if not self.sums["n"].sum():
            raise ValueError("no held-out tokens were evaluated")
        per_unit = {name: values.cpu().numpy() for name, values in self.sums.items()} | {
            "offset": self.offset.cpu().numpy()
        }
        points, replicates = bootstrap(per_unit, STATISTICS, resamples, seed)
        metrics = with_intervals(points, replicates)
        metrics |= {
            "dead_fraction": 1.0 - self.fired.float().mean().item(),
            "n_tokens": int(self.sums["n"].sum()),
            "n_tokens_masked_metrics": int(self.sums["n_kept"].sum()),
        }
        return metrics, replicates


def column_means(
    cache: ActivationCache, layer: int, batch_rows: int, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
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
    sae,
    cache: ActivationCache,
    layer: int,
    *,
    batch_rows: int,
    special_token_ids: list[int],
    device: str = "cpu",
    resamples: int = 1,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every metric of one SAE on `layer` of the held-out cache, with 95% intervals from `resamples`
    bootstrap resamples of its sequences, and the replicates; `special_token_ids` are masked out of
    the masked metrics."""
    keep = kept_positions(cache.tokens(), special_token_ids)
    context = cache.attrs["context_length"]
    accumulator = MetricAccumulator(
        sae.num_latents, *column_means(cache, layer, batch_rows, keep), n_units=cache.n_tokens // context
    )
    start = 0
    for x in tqdm(cache.batches(layer, batch_rows, device=device), desc=f"evaluating layers.{layer}"):
        encoded = sae.encode(x)
        x_hat = sae.decode(encoded.top_acts, encoded.top_indices)
        rows = torch.arange(start, start + len(x))
        accumulator.update(x, x_hat, encoded.top_acts, encoded.top_indices, rows // context, keep[rows])
        start += len(x)
    return accumulator.result(resamples, seed)
