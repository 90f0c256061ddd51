"""The L1-penalised SAE of Appendix C.2 and its training loop.

Architecture: linear encoder with bias, ReLU, linear decoder without bias; orthogonal decoder
initialisation; decoder columns (dictionary elements) renormalised to unit norm before every
training step, and once more after the last one so the returned dictionary is unit norm.

Loss: the squared error between each input and decoded vector (summed over dimensions), plus
`l1_coefficient` times the L1 norm of its latent code, both averaged over the batch; the paper
varies the coefficient from 1e-3 to 100. Averaging the squared error over dimensions as well
(`F.mse_loss`) would shrink it n_d-fold against the L1 term and leave all but the lowest
coefficients of that range with dead SAEs. The paper names neither optimiser nor batch size
or learning rate (only 100 epochs); we use Adam with lr 1e-3 and batch size 256, the settings of
public replications of Sharkey et al. (2022). With them, 1024 latents on the paper's toy data
(n_s = 512, n_d = 256, 10K points, seed 0, 100 epochs) reach MMCS 0.999 at coefficients 10^-1.25
and 10^-1, and above 0.95 from 10^-1.75 to 10^-0.5 (0.956, 0.996, 0.999, 0.999, 0.997, 0.992);
it falls to 0.68 at 10^-2 and 0.30 at 10^-3 (dense codes, L0 230 and 689) and to 0.81 at
10^-0.25. Of the paper's 21 coefficients, 11 (10^-2.75 to 10^-0.25) give explained variance
between 0.05 and 0.99; 10^-3 reaches 0.990 with L0 689, and the SAEs at 10^0, 10^0.25, 10^0.5,
10 and 100 are dead (explained variance <= 0.006; the other four coefficients above 1 were not
run).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from saerand.toy import metrics


class L1Sae(nn.Module):
    def __init__(self, n_inputs: int, n_latents: int):
        super().__init__()
        self.encoder = nn.Linear(n_inputs, n_latents)
        self.decoder = nn.Linear(n_latents, n_inputs, bias=False)
        nn.init.orthogonal_(self.decoder.weight)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.decoder.weight /= self.decoder.weight.norm(dim=0, keepdim=True)

    @property
    def dictionary(self) -> torch.Tensor:
        """Dictionary elements (decoder columns) as rows: n_latents x n_inputs."""
        return self.decoder.weight.T

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.relu(self.encoder(inputs))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(inputs)
        return self.decoder(codes), codes


def l1_sae_loss(
    inputs: torch.Tensor, reconstructions: torch.Tensor, codes: torch.Tensor,
    l1_coefficient: float,
) -> torch.Tensor:
    squared_error = (reconstructions - inputs).pow(2).sum(dim=1).mean()
    return squared_error + l1_coefficient * codes.abs().sum(dim=1).mean()


def l1_coefficients(low: float = 1e-3, high: float = 100.0, n: int = 21) -> list[float]:
    """`n` log-spaced L1 coefficients from `low` to `high` (the paper's range: 1e-3 to 100)."""
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got low={low}, high={high}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return [float(c) for c in np.geomspace(low, high, n)]


@torch.no_grad()
def evaluate(
    model: L1Sae, data: torch.Tensor, ground_truth_features: torch.Tensor | None = None,
) -> dict[str, float]:
    """Explained variance, the sparsity measures and (given ground truth) MMCS on `data`."""
    reconstructions, codes = model(data)
    results = {
        "explained_variance": metrics.explained_variance(data, reconstructions),
        "l0": metrics.l0(codes),
        "l1": metrics.l1(codes),
        "l1_over_sqrt_l2": metrics.l1_over_sqrt_l2(codes),
        "hoyer": metrics.hoyer(codes),
    }
    if ground_truth_features is not None:
        results["mmcs"] = metrics.mean_max_cosine_similarity(
            ground_truth_features.to(data.device), model.dictionary
        )
    return results


@dataclass
class L1SaeResult:
    model: L1Sae
    metrics: dict[str, float]  # on the validation split, see `evaluate`
    epoch_losses: list[float]  # mean training loss per epoch


def split_validation(
    n_samples: int, validation_fraction: float, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train indices, validation indices); the validation split has at least one row."""
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_validation = max(1, round(validation_fraction * n_samples))
    if n_validation >= n_samples:
        raise ValueError(f"{n_samples} samples are too few to split off a validation set")
    order = np.random.default_rng(seed).permutation(n_samples)
    return order[n_validation:], order[:n_validation]


def train_l1_sae(
    data: np.ndarray, n_latents: int, l1_coefficient: float, epochs: int = 100,
    batch_size: int = 256, lr: float = 1e-3, seed: int = 0, validation_fraction: float = 0.1,
    device: str = "cpu", ground_truth_features: np.ndarray | None = None, progress: bool = True,
) -> L1SaeResult:
    """Train an `L1Sae` on `data` (n_samples x n_d) with Adam and evaluate it on a seeded
    `validation_fraction` hold-out (MMCS too if `ground_truth_features`, n_s x n_d, is given)."""
    if l1_coefficient <= 0:
        raise ValueError(f"l1_coefficient must be positive, got {l1_coefficient}")
    for name, value in {"n_latents": n_latents, "epochs": epochs, "batch_size": batch_size}.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    data = np.asarray(data, dtype=np.float32)
    train_rows, validation_rows = split_validation(len(data), validation_fraction, seed)
    train = torch.from_numpy(data[train_rows]).to(device)
    validation = torch.from_numpy(data[validation_rows]).to(device)

    # Seed a forked RNG so initialisation is reproducible without touching the global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = L1Sae(data.shape[1], n_latents)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffler = torch.Generator().manual_seed(seed)

    epoch_losses: list[float] = []
    bar = tqdm(range(epochs), desc=f"L1 SAE (l1={l1_coefficient:.3g})", disable=not progress)
    for _ in bar:
        total, n_batches = torch.zeros((), device=device), 0
        for batch_rows in torch.randperm(len(train), generator=shuffler).split(batch_size):
            batch = train[batch_rows.to(device)]
            model.normalize_decoder()
            reconstructions, codes = model(batch)
            loss = l1_sae_loss(batch, reconstructions, codes, l1_coefficient)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            n_batches += 1
        epoch_losses.append(float(total) / n_batches)
        bar.set_postfix(loss=f"{epoch_losses[-1]:.4g}")
    model.normalize_decoder()
    model.eval()

    features = None if ground_truth_features is None else torch.as_tensor(ground_truth_features)
    return L1SaeResult(model, evaluate(model, validation, features), epoch_losses)
