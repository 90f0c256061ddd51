"""The randomly initialised two-layer MLP of Section 4 / Appendix C.2.

Input and output sizes are n_d, the hidden size is 4 n_d with a ReLU in between (loosely a
transformer feed-forward block); weights keep torch's default `nn.Linear` initialisation, since
the paper uses the MLP "at initialization" and names no other scheme.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from saerand.toy.data import lomax_2d

HIDDEN_MULTIPLIER = 4


def random_mlp(n_dims: int, seed: int = 0) -> nn.Sequential:
    """Linear(n_d, 4 n_d) -> ReLU -> Linear(4 n_d, n_d) at torch's default initialisation."""
    if n_dims <= 0:
        raise ValueError(f"n_dims must be positive, got {n_dims}")
    # Seed a forked RNG so that building an MLP leaves the caller's global torch RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(n_dims, HIDDEN_MULTIPLIER * n_dims),
            nn.ReLU(),
            nn.Linear(HIDDEN_MULTIPLIER * n_dims, n_dims),
        ).eval()


@torch.no_grad()
def mlp_outputs(
    data: np.ndarray,
    mlp: nn.Module,
    batch_size: int = 65_536,
    device: str = "cpu",
) -> np.ndarray:
    """Pass `data` (n_samples x n_d) through `mlp` in batches; returns float32 n_samples x n_d."""
    mlp = mlp.to(device)
    inputs = torch.as_tensor(np.asarray(data, dtype=np.float32))
    outputs = [mlp(batch.to(device)).cpu() for batch in inputs.split(batch_size)]
    return torch.cat(outputs).numpy()


def lomax_through_mlp(n_samples: int = 10_000, seed: int = 0) -> dict[str, np.ndarray]:
    """The Figure 4 pipeline: 3 Lomax(1, 1) features -> 2 dims by D -> random MLP -> pinv(D).

    Returns four named arrays, one per panel: `superposed_inputs` (pinv(D) x, n x 3),
    `mlp_inputs` (x, n x 2), `mlp_outputs` (MLP(x), n x 2) and `superposed_outputs`
    (pinv(D) MLP(x), n x 3). Both 3-D arrays use the same pseudo-inverse so that they differ only
    by the MLP; the caption recovers the sparse outputs this way and names no other operation
    for the inputs.
    """
    inputs, projection = lomax_2d(n_samples=n_samples, seed=seed)
    outputs = mlp_outputs(inputs, random_mlp(inputs.shape[1], seed=seed))
    recover = np.linalg.pinv(projection)
    return {
        "superposed_inputs": inputs @ recover.T,
        "mlp_inputs": inputs,
        "mlp_outputs": outputs,
        "superposed_outputs": outputs @ recover.T,
    }
