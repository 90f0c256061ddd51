"""The L1-penalised SAE of Appendix C.2 and its training loop.

Architecture: linear encoder with bias, ReLU, linear decoder without bias; orthogonal decoder
initialisation; decoder columns (dictionary elements) renormalised to unit norm before every
training step, and once more after the last one so the returned dictionary is unit norm.

Loss (`loss`, one of `LOSSES`). C.2 says "the mean squared error (MSE) between the input and
decoded vectors, plus the mean L1 norm of the encoded vectors multiplied by a coefficient", which
leaves open what the means run over:

- `standardized_mean_squared_error` (default): as in the authors' public code
  (github.com/tim-lawson/superposition), each input row is standardised over its dimensions
  (minus its mean, divided by its unbiased std + 1e-8), the SAE encodes and decodes that row, and
  the decoded row is mapped back (times the std, plus the mean), so reconstructions, 1 - NRE and
  explained variance are on the input scale (the codes, and so L1 and L1/sqrt(L2), are those of
  the standardised rows, as in the authors' code); the loss is `F.mse_loss` (mean over
  samples and dimensions) on that scale plus `l1_coefficient` times mean |z| over samples and
  latents. Standardised rows are orthogonal to the all-ones vector, so the dictionary can at
  best find each feature minus its mean over dimensions, whose cosine with the feature is about
  sqrt(1 - 1/n_d) (0.983 at n_d = 32, 0.998 at 256).
- `summed_squared_error`: the squared error summed over dimensions plus `l1_coefficient` times the
  L1 norm of the code, both averaged over the batch; the SAE sees the raw inputs, so L1 and
  L1/sqrt(L2) carry the data's scale (the random MLP's outputs have about 0.38 times the RMS of its
  inputs on the demo's superposed data).

The two put a coefficient at different strengths: for rows of std s (0.22 at n_d = 32, 0.077 at
n_d = 256 on the superposed data), the standardised loss at c acts roughly like the summed one
at c n_d / (n_latents s), so its zone moves with the latent count. Measured Figure 5 (MMCS of the
21 coefficients; n_s = 64, n_d = 32, 3000 points, 40 epochs, Adam lr 3e-3, batch 64, seeds
0-2): with 128 latents the zones nearly coincide, MMCS > 0.95 from 10^-0.75 to 10^-0.25 (peak
0.985 at 10^-0.5) summed and from 10^-0.75 to 10^-0.5 (peak 0.96) standardised; with 64 latents
(seed 0) the standardised peak is half a decade lower (0.94 at 10^-1 against 0.96 at 10^-0.5),
with 256 a quarter decade higher. At the paper's size (n_s = 512, n_d = 256, 1024 latents, 10K
points, 100 epochs, Adam lr 1e-3, batch 256, seed 0) the standardised MMCS is 0.38, 0.46, 0.61,
0.91 from 10^-3 to 10^-2.25, then 0.991, 0.997, 0.997, 0.995, 0.955 from 10^-2 to 10^-1, 0.37 at
10^-0.75, and the SAEs are dead from 10^-0.5 (1 - NRE 0.004): its zone lies half a
decade below the summed one's. Figure 5 is a raster image whose axis ticks the paper's text does
not carry, so which zone matches it is not known; both lie well inside the paper's range. The
standardised convention is the default because it is the authors', and because Section 4.3 compares
sparsity across datasets of different scales (inputs against the MLP's outputs): its SAE encodes a
row and any multiple of it alike, where the summed one's codes follow the data's scale (training
still weighs the reconstruction error on the input scale under both). bench/toy_loss_conventions.py
measures Figure 6 under both.

The paper names neither optimiser nor batch size or learning rate (only 100 epochs); we use Adam
with lr 1e-3 and batch size 256, as the authors' code does. Under `summed_squared_error`, 1024
latents on the paper's toy data (seed 0, 100 epochs) reach MMCS 0.999 at coefficients 10^-1.25
and 10^-1, and above 0.95 from 10^-1.75 to 10^-0.5 (0.956, 0.996, 0.999, 0.999, 0.997, 0.992);
it falls to 0.68 at 10^-2 and 0.30 at 10^-3 (dense codes, L0 230 and 689) and to 0.81 at
10^-0.25. Of the paper's 21 coefficients, 11 (10^-2.75 to 10^-0.25) give 1 - NRE
between 0.05 and 0.99; 10^-3 reaches 0.990 with L0 689, and the SAEs at 10^0, 10^0.25, 10^0.5,
10 and 100 are dead (1 - NRE <= 0.006; the other four coefficients above 1 were not
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

SUMMED_SQUARED_ERROR = "summed_squared_error"
STANDARDIZED_MEAN_SQUARED_ERROR = "standardized_mean_squared_error"
LOSSES = (SUMMED_SQUARED_ERROR, STANDARDIZED_MEAN_SQUARED_ERROR)
# Added to the std before dividing, as the authors' code does, so a constant row stays finite.
STANDARDIZE_EPSILON = 1e-8


class L1Sae(nn.Module):
    """With `standardize`, each input row is standardised before encoding and its reconstruction
    mapped back to the input scale (the `standardized_mean_squared_error` convention)."""

    def __init__(self, n_inputs: int, n_latents: int, standardize: bool = False):
        super().__init__()
        self.standardize = standardize
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
        """Codes of rows as the encoder sees them (already standardised if `standardize`)."""
        return F.relu(self.encoder(inputs))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructions on the input scale, latent codes)."""
        if not self.standardize:
            codes = self.encode(inputs)
            return self.decoder(codes), codes
        mean = inputs.mean(dim=1, keepdim=True)
        std = (inputs - mean).std(dim=1, keepdim=True)
        codes = self.encode((inputs - mean) / (std + STANDARDIZE_EPSILON))
        return self.decoder(codes) * std + mean, codes


def l1_sae_loss(
    inputs: torch.Tensor,
    reconstructions: torch.Tensor,
    codes: torch.Tensor,
    l1_coefficient: float,
    loss: str = STANDARDIZED_MEAN_SQUARED_ERROR,
) -> torch.Tensor:
    """The training loss of one batch under convention `loss` (see the module docstring)."""
    if loss == SUMMED_SQUARED_ERROR:
        squared_error = (reconstructions - inputs).pow(2).sum(dim=1).mean()
        return squared_error + l1_coefficient * codes.abs().sum(dim=1).mean()
    if loss == STANDARDIZED_MEAN_SQUARED_ERROR:
        return F.mse_loss(reconstructions, inputs) + l1_coefficient * codes.abs().mean()
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def l1_coefficients(low: float = 1e-3, high: float = 100.0, n: int = 21) -> list[float]:
    """`n` log-spaced L1 coefficients from `low` to `high` (the paper's range: 1e-3 to 100)."""
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got low={low}, high={high}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return [float(c) for c in np.geomspace(low, high, n)]


@torch.no_grad()
def evaluate(
    model: L1Sae,
    data: torch.Tensor,
    ground_truth_features: torch.Tensor | None = None,
) -> dict[str, float]:
    """Explained variance, the sparsity measures and (given ground truth) MMCS on `data`."""
    reconstructions, codes = model(data)
    results = {
        "one_minus_nre": metrics.one_minus_nre(data, reconstructions),
        "explained_variance": metrics.explained_variance(data, reconstructions),
        "l0": metrics.l0(codes),
        "l1": metrics.l1(codes),
        "l1_over_sqrt_l2": metrics.l1_over_sqrt_l2(codes),
        "hoyer": metrics.hoyer(codes),
    }
    if ground_truth_features is not None:
        results["mmcs"] = metrics.mean_max_cosine_similarity(ground_truth_features.to(data.device), model.dictionary)
    return results


@dataclass
class L1SaeResult:
    model: L1Sae
    metrics: dict[str, float]  # on the validation split, see `evaluate`
    epoch_losses: list[float]  # mean training loss per epoch


def split_validation(
    n_samples: int,
    validation_fraction: float,
    seed: int,
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
    data: np.ndarray,
    n_latents: int,
    l1_coefficient: float,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    validation_fraction: float = 0.1,
    device: str = "cpu",
    ground_truth_features: np.ndarray | None = None,
    progress: bool = True,
    loss: str = STANDARDIZED_MEAN_SQUARED_ERROR,
) -> L1SaeResult:
    """Train an `L1Sae` on `data` (n_samples x n_d) with Adam under loss convention `loss` and
    evaluate it on a seeded `validation_fraction` hold-out (MMCS too if `ground_truth_features`,
    n_s x n_d, is given)."""
    if l1_coefficient <= 0:
        raise ValueError(f"l1_coefficient must be positive, got {l1_coefficient}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    for name, value in {"n_latents": n_latents, "epochs": epochs, "batch_size": batch_size}.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    data = np.asarray(data, dtype=np.float32)
    standardize = loss == STANDARDIZED_MEAN_SQUARED_ERROR
    if standardize and data.shape[1] < 2:
        raise ValueError(f"loss {loss!r} standardises each row over its dimensions: needs n_d >= 2")
    train_rows, validation_rows = split_validation(len(data), validation_fraction, seed)
    train = torch.from_numpy(data[train_rows]).to(device)
    validation = torch.from_numpy(data[validation_rows]).to(device)

    # Seed a forked RNG so initialisation is reproducible without touching the global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = L1Sae(data.shape[1], n_latents, standardize=standardize)
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
            batch_loss = l1_sae_loss(batch, reconstructions, codes, l1_coefficient, loss)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            total += batch_loss.detach()
            n_batches += 1
        epoch_losses.append(float(total) / n_batches)
        bar.set_postfix(loss=f"{epoch_losses[-1]:.4g}")
    model.normalize_decoder()
    model.eval()

    features = None if ground_truth_features is None else torch.as_tensor(ground_truth_features)
    return L1SaeResult(model, evaluate(model, validation, features), epoch_losses)
