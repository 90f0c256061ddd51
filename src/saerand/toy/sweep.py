"""One sweep of Section 4: a dataset, its Gaussian control, both passed through one random MLP,
and an L1 SAE per (kind, latent count, L1 coefficient) on each, as one tidy table.

Datasets (`toy_dataset`): the superposed toy data of Appendix C.1 (ground truth known, so MMCS
is measured on the inputs), GloVe word vectors, and the input embedding matrix of a subject model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from saerand.progress import JsonLinesLog
from saerand.settings import ToySaeSettings
from saerand.toy.data import embedding_matrix, gaussian_control, sharkey_data
from saerand.toy.glove import glove_vectors
from saerand.toy.l1_sae import l1_coefficients, train_l1_sae
from saerand.toy.mlp import mlp_outputs, random_mlp

SUPERPOSITION = "superposition"
# Every Pareto figure's four lines, in drawing order.
KINDS = ("inputs", "gaussian inputs", "outputs", "gaussian outputs")
# How the Gaussian control matches the data (config `toy.gaussian_control`).
GAUSSIAN_CONTROLS = ("per_dimension", "scalar")


def toy_dataset(spec: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(data, ground-truth features or None) for one dataset spec of the workflow config."""
    if spec["source"] == SUPERPOSITION:
        return sharkey_data(
            spec["n_samples"], spec["n_features"], spec["n_dims"], spec["expected_active"], spec["decay"], seed=seed
        )
    if spec["source"] == "glove":
        return glove_vectors(spec["path"], spec.get("limit"), config_key=spec["config_key"])[1], None
    return embedding_matrix(spec["location"], spec["revision"], spec["n_layers"]), None


def dataset_kinds(
    inputs: np.ndarray,
    seed: int,
    control: str,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """The four datasets of every Pareto figure: the inputs, their Gaussian control (same mean and
    standard deviation, per dimension or one scalar each: `control`), and both passed through the
    same randomly initialised MLP."""
    if control not in GAUSSIAN_CONTROLS:
        raise ValueError(f"control must be one of {', '.join(GAUSSIAN_CONTROLS)}, got {control!r}")
    gaussian = gaussian_control(inputs, seed=seed, per_dimension=control == "per_dimension")
    mlp = random_mlp(inputs.shape[1], seed=seed)
    return dict(
        zip(
            KINDS,
            (inputs, gaussian, mlp_outputs(inputs, mlp, device=device), mlp_outputs(gaussian, mlp, device=device)),
        )
    )


def grid_point(row: dict[str, Any]) -> tuple[str, int, float]:
    """A sweep row's (kind, latent count, L1 coefficient)."""
    return row["kind"], row["n_latents"], row["l1_coefficient"]


def sweep(
    kinds: dict[str, np.ndarray],
    latent_counts: list[int],
    sae: ToySaeSettings,
    seed: int,
    ground_truth: np.ndarray | None = None,
    device: str = "cpu",
    progress: JsonLinesLog | None = None,
) -> pd.DataFrame:
    """Train an L1 SAE for every (kind, latent count, L1 coefficient); one row of validation
    metrics each (MMCS on the inputs when the ground truth is known). With `progress`, each row is
    logged as it is done and a rerun trains only the points not yet there (each point's SAE is
    seeded alone, so a resumed sweep equals one pass)."""
    coefficients = l1_coefficients(**dataclasses.asdict(sae.l1_coefficients))
    grid = [(kind, n, c) for kind in kinds for n in latent_counts for c in coefficients]
    done = progress.done if progress else {}
    rows = []
    for kind, n_latents, coefficient in tqdm(grid, desc=f"L1 SAEs (seed {seed})"):
        if (kind, n_latents, coefficient) in done:
            rows.append(done[kind, n_latents, coefficient])
            continue
        result = train_l1_sae(
            kinds[kind],
            n_latents,
            coefficient,
            epochs=sae.epochs,
            batch_size=sae.batch_size,
            lr=sae.lr,
            seed=seed,
            validation_fraction=sae.validation_fraction,
            device=device,
            ground_truth_features=ground_truth if kind == "inputs" else None,
            progress=False,
            loss=sae.loss,
        )
        row = {"kind": kind, "n_latents": n_latents, "l1_coefficient": coefficient, "seed": seed, **result.metrics}
        rows.append(row)
        if progress:
            progress.add({key: value.item() if hasattr(value, "item") else value for key, value in row.items()})
    return pd.DataFrame(rows)
