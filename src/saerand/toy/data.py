"""Data for the toy models of superposition (Section 4, Appendix C.1).

Every generator is seeded (`numpy.random.default_rng(seed)`) and vectorised over samples, and
returns float32 numpy arrays with one sample per row.
"""

from __future__ import annotations

import numpy as np
import torch


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def unit_hypersphere(n_points: int, n_dims: int, rng: np.random.Generator) -> np.ndarray:
    """`n_points` uniform points on the unit sphere in R^n_dims (normalised Gaussian vectors)."""
    points = rng.standard_normal((n_points, n_dims))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def sharkey_coefficients(
    n_samples: int,
    n_features: int,
    expected_active: float,
    decay: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sparse, correlated ground-truth feature coefficients (n_samples x n_features).

    Exactly the procedure of the paper's Figure 12 (Appendix C.1), vectorised: a covariance
    Sigma = A A^T with A_ij ~ N(0, 1); per sample alpha ~ N(0, Sigma) (drawn as A @ eps, which
    has that covariance without a Cholesky factorisation of the near-singular Sigma); p = Phi(alpha)
    (standard normal c.d.f.); decay p_i -> p_i ** (decay * i); rescale p -> m p / sum_j p_j so
    that m = `expected_active` features are active in expectation; Bernoulli(clip(p, 0, 1)); and
    multiply the outcomes by U[0, 1) coefficients.

    The decay exponent is `decay * i`, as both Figure 12 and the text of C.1 write it. Public
    re-implementations of Sharkey et al. (2022) differ here (e.g. they multiply p_i by decay**i
    and draw alpha once per batch); we follow the paper being reproduced. Because the diagonal
    of Sigma is about n_features, Phi(alpha) is close to 0 or 1 for most features, so the decay
    is mild and the correlation structure decides which features co-occur. The correlation acts
    only through the decay: with decay = 0 every p_i is 1 and features are independent and
    equally frequent.
    """
    _require_positive(
        n_samples=n_samples,
        n_features=n_features,
        expected_active=expected_active,
    )
    if expected_active > n_features:
        raise ValueError(f"expected_active ({expected_active}) cannot exceed n_features ({n_features})")
    if decay < 0:
        raise ValueError(f"decay must be non-negative, got {decay}")
    mixing = rng.standard_normal((n_features, n_features))
    correlated_normal = rng.standard_normal((n_samples, n_features)) @ mixing.T
    probabilities = torch.special.ndtr(torch.from_numpy(correlated_normal)).numpy()
    probabilities = probabilities ** (decay * np.arange(n_features))
    # The i = 0 term is p ** 0 = 1, so every row sum is at least 1: no division by zero.
    probabilities *= expected_active / probabilities.sum(axis=1, keepdims=True)
    active = rng.random((n_samples, n_features)) < np.clip(probabilities, 0.0, 1.0)
    return (active * rng.random((n_samples, n_features))).astype(np.float32)


def sharkey_data(
    n_samples: int,
    n_features: int = 512,
    n_dims: int = 256,
    expected_active: float = 5,
    decay: float = 0.99,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Superposed toy data of Sharkey et al. (2022) as in the paper's Appendix C.1 / Figure 12.

    n_s = `n_features` ground-truth features are uniform on the unit sphere in R^n_d
    (n_d = `n_dims`); each sample is coefficients @ features with the coefficients of
    `sharkey_coefficients`. The paper uses n_s = 512, n_d = 256, decay = 0.99, m = 5.

    Returns (data, features): data is n_samples x n_dims, features is n_features x n_dims with
    unit rows.
    """
    _require_positive(n_samples=n_samples, n_features=n_features, n_dims=n_dims)
    if n_dims > n_features:
        raise ValueError(
            f"n_dims ({n_dims}) > n_features ({n_features}): superposition needs at least as "
            "many ground-truth features as dimensions"
        )
    rng = np.random.default_rng(seed)
    features = unit_hypersphere(n_features, n_dims, rng)
    coefficients = sharkey_coefficients(n_samples, n_features, expected_active, decay, rng)
    return (coefficients @ features).astype(np.float32), features.astype(np.float32)


def lomax_2d(
    n_samples: int = 10_000,
    n_features: int = 3,
    n_dims: int = 2,
    alpha: float = 1.0,
    scale: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The Figure 4 example: n_s IID Lomax(alpha, scale) features projected to n_d dimensions.

    z ~ Lomax(alpha, scale) elementwise (numpy's `pareto` is the Lomax distribution with unit
    scale), x = z @ D^T with D an n_d x n_s standard normal matrix. The paper's Eq. (1) also adds
    small Gaussian noise; Figure 4 does not mention it, so none is added.

    Returns (data, projection): data is n_samples x n_dims, projection is D (n_dims x n_features).
    """
    _require_positive(
        n_samples=n_samples,
        n_features=n_features,
        n_dims=n_dims,
        alpha=alpha,
        scale=scale,
    )
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((n_dims, n_features))
    sparse = scale * rng.pareto(alpha, size=(n_samples, n_features))
    return (sparse @ projection.T).astype(np.float32), projection.astype(np.float32)


def gaussian_control(data: np.ndarray, seed: int = 0, *, per_dimension: bool) -> np.ndarray:
    """Gaussian data of the same shape with the mean and standard deviation of `data`.

    The paper (Section 4.2) says "a mean and standard deviation equal to the superposed toy data"
    without saying per dimension or overall. `per_dimension` matches them per dimension (a
    diagonal Gaussian), which also preserves the overall mean and, up to the spread of the
    per-dimension means, the overall variance; otherwise one scalar mean and std over all values
    give an isotropic Gaussian, as in the authors' code (config `toy.gaussian_control`).
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(f"data must be a 2-D array with at least 2 rows, got shape {data.shape}")
    axis = 0 if per_dimension else None
    mean, std = data.mean(axis=axis), data.std(axis=axis)
    rng = np.random.default_rng(seed)
    return (mean + std * rng.standard_normal(data.shape)).astype(np.float32)


def embedding_matrix(location: str, revision: str, n_layers: int) -> np.ndarray:
    """The input embedding matrix of a subject model of the main study, one row per token of its
    tokenizer (len(tokenizer) x hidden, float32), loaded as the study loads it (a hub id or a local
    directory of revisions; for GPT-NeoX / Pythia, `gpt_neox.embed_in.weight`).

    Pythia pads its embedding to a multiple of 128 rows (50304 against the tokenizer's 50277):
    no token ever looks the padding rows up, so they are no token's embedding and are dropped,
    as the authors' code does."""
    from saerand.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(location, revision, n_layers=n_layers)
    weight = model.get_input_embeddings().weight
    n_tokens = len(load_tokenizer(location, revision))
    if n_tokens > len(weight):
        raise ValueError(
            f"{location}@{revision}: the tokenizer has {n_tokens} tokens but the embedding only {len(weight)} rows"
        )
    return weight[:n_tokens].detach().to(torch.float32).numpy().copy()
