"""Evaluation metrics of Section 4 / Appendix C, computed on a validation split.

Latent codes `z` are n_samples x n_latents; every sparsity measure is computed per sample and
averaged over samples:

- `l0`: number of nonzero latents.
- `l1`: ||z||_1.
- `l1_over_sqrt_l2`: ||z||_1 / sqrt(||z||_2), the literal reading of the x-axis of Figures 6
  and 7 ("L1 Norm Over sqrt(L2 Norm)"). Unlike L1/L2 it is not scale invariant; Figure 7's axis
  reaches 140, beyond the maximum sqrt(4800) ~ 69 that L1/L2 could take with 4800 latents,
  which supports the literal reading. An all-zero code counts as 0 (the limit as z -> 0).
- `hoyer`: Hoyer sparseness (sqrt(n) - ||z||_1/||z||_2) / (sqrt(n) - 1) with n = n_latents,
  1 for a one-hot code and 0 for a constant one; an all-zero code counts as 1 (sparsest), in
  line with L0 and L1, which also rate it sparsest.

Lower is sparser for all measures but `hoyer`: see `LOWER_IS_SPARSER`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

LOWER_IS_SPARSER = {"l0": True, "l1": True, "l1_over_sqrt_l2": True, "hoyer": False}


def one_minus_nre(inputs: torch.Tensor, reconstructions: torch.Tensor) -> float:
    """1 - normalized reconstruction error: 1 - sum ||x - x_hat||^2 / sum ||x||^2.

    The paper's axes read "explained variance (normalized reconstruction error)" and run from 0
    to 1: an all-zero reconstruction scores 0. Relative to ||x||^2 rather than to the variance
    about the mean, since the SAE has no decoder bias; for zero-mean data the two agree. On data
    with a large mean (the MLP outputs) the mean alone already scores high here: see
    `explained_variance`."""
    residual = (inputs - reconstructions).pow(2).sum()
    return float(1 - residual / inputs.pow(2).sum())


def explained_variance(inputs: torch.Tensor, reconstructions: torch.Tensor) -> float:
    """1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, the mean taken over samples: the usual
    R^2, which scores reconstructing only the mean 0 and so counts only how x varies: Section 3's
    explained variance (saerand.metrics, sparsify's 1 - FVU), on the toy data."""
    residual = (inputs - reconstructions).pow(2).sum()
    return float(1 - residual / (inputs - inputs.mean(dim=0)).pow(2).sum())


def l0(codes: torch.Tensor) -> float:
    return float((codes != 0).sum(dim=1).float().mean())


def l1(codes: torch.Tensor) -> float:
    return float(codes.abs().sum(dim=1).mean())


def l1_over_sqrt_l2(codes: torch.Tensor) -> float:
    l1_norms = codes.abs().sum(dim=1)
    sqrt_l2 = codes.norm(dim=1).sqrt()
    ratio = torch.where(sqrt_l2 > 0, l1_norms / sqrt_l2.clamp_min(1e-30), 0.0)
    return float(ratio.mean())


def hoyer(codes: torch.Tensor) -> float:
    n = codes.shape[1]
    if n < 2:
        raise ValueError(f"Hoyer sparseness needs at least 2 latents, got {n}")
    l2_norms = codes.norm(dim=1)
    l1_over_l2 = torch.where(l2_norms > 0, codes.abs().sum(dim=1) / l2_norms.clamp_min(1e-30), 1.0)
    return float(((math.sqrt(n) - l1_over_l2) / (math.sqrt(n) - 1)).mean())


def mean_max_cosine_similarity(features: torch.Tensor, dictionary: torch.Tensor) -> float:
    """For each ground-truth feature (row of `features`) its largest cosine similarity with any
    dictionary element (row of `dictionary`, i.e. decoder column), averaged over features."""
    cosines = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(dictionary, dim=1).T
    return float(cosines.max(dim=1).values.mean())


def pareto_frontier(
    table: pd.DataFrame,
    x: str,
    y: str,
    minimize_x: bool = True,
) -> pd.DataFrame:
    """Rows of `table` not dominated by another row with higher `y` (explained variance) and
    lower `x` (sparsity measure; higher if not `minimize_x`), sorted from sparsest to densest."""
    ordered = table.sort_values([x, y], ascending=[minimize_x, False])
    best_before = ordered[y].cummax().shift(fill_value=-math.inf)
    return ordered[ordered[y] > best_before]


def sparsity_at_one_minus_nre(
    table: pd.DataFrame,
    measure: str,
    one_minus_nre: float,
) -> float:
    """The sparsity `measure` that the Pareto frontier of `table` reaches at the given explained
    variance, interpolated linearly between frontier points (NaN outside the frontier's range).

    This makes "sparser at a given level of explained variance" (Section 4.2) a number: compare
    it between a dataset and its Gaussian control."""
    frontier = pareto_frontier(table, measure, "one_minus_nre", minimize_x=LOWER_IS_SPARSER[measure])
    variances = frontier["one_minus_nre"].to_numpy()
    if not variances.min() <= one_minus_nre <= variances.max():
        return math.nan
    return float(np.interp(one_minus_nre, variances, frontier[measure].to_numpy()))
