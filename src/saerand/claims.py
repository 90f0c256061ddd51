"""The paper's claims as numbers, each with a 95% interval and a verdict.

Every row names the claim, the paper's own words and where they are, the number that tests it, its
interval and whether it holds. Held-out metrics are resampled over the same sequences with the
same seed for every SAE, so their replicates pair across SAEs (variants, layers, sweep points)
and differences get paired intervals. AUROC and token entropy are resampled over each SAE's own
latents: each SAE's replicates are shuffled with its own seed first, so that any two SAEs'
replicates combine as independent samples.

- Similarity (Section 3.2, Figure 3): trained minus each variant, "holds" where the difference's
  interval lies inside +-margin (a margin the paper never states: evaluation.similarity_margins).
- The paper's comparative claims, which need no margin: random variants closer to trained than the
  control is; the control's reconstructions worsening with depth while the others' improve; the
  re-randomised variants closer to trained than step 0; AUROC rising with model size and falling
  with depth; the control at chance for the token-identity (null) explainer; Figure 11's ordering
  of the variants kept at every sweep point. Each holds where its interval is on the claimed side.
- Token entropy (Section 3.3): control highest, random variants lowest, trained rising with depth.
- Section 4 (saerand.toy.claims): superposed inputs sparser than their Gaussian control at matched
  1 - NRE, the gap shrinking after the random MLP, MMCS above 0.9 somewhere on the grid.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .intervals import percentile_interval
from .study import SaeHyperparameters, SaeTarget
from .variant_registry import LEARNED, RESAMPLED, VARIANTS

# Resampled over each SAE's own sampled latents (not the shared held-out sequences).
LATENT_COLUMNS = ("fuzz_auroc", "detection_auroc", "entropy")
COLUMNS = [
    "model",
    "layer",
    "claim",
    "metric",
    "comparison",
    "estimate",
    "low",
    "high",
    "margin",
    "holds",
    "source",
    "paper_words",
]
# Each claim: where the paper makes it, and its words.
PAPER = {
    "trained and random similar": (
        "Section 3.2",
        "the randomly initialized and re-randomized models were more similar to the trained model",
    ),
    "trained and control similar": ("Section 3.2", "than to our control"),
    "random closer to trained than the control": (
        "Section 3.2",
        "we broadly found that the randomly initialized and re-randomized models (Figure 3 blue, green, orange "
        "lines) were more similar to the trained model (Figure 3 gray lines) than to our control",
    ),
    "control worsens with depth": (
        "Section 3.2",
        "[the random control's] reconstruction errors tend to increase across layers",
    ),
    "others improve with depth": ("Section 3.2", "while the remaining variants decrease"),
    "re-randomised closer to trained than step0": (
        "Section 3.2",
        "the randomized variants (blue and orange lines) are more similar to the trained model than the variant at "
        "initialization (green line). This is especially evident if we look at the L1 norm values in larger models",
    ),
    "AUROC rises with model size": ("Section 3.2", "for all but the control variant, AUROC increases with model size"),
    "AUROC falls with depth": (
        "Figure 1",
        "the overall degradation in performance as the layer index increases",
    ),
    "control at chance for the null explainer": (
        "this workflow",
        "(not in the paper) a token embedding drawn afresh at every occurrence leaves token identity nothing to predict",
    ),
    "variant ordering kept across the sweep": (
        "Figure 11",
        "all initialization strategies maintaining their relative performance ordering",
    ),
    "control has the highest token entropy": (
        "Section 3.3",
        "The negative control variant displays a consistently high entropy",
    ),
    "random variants have the lowest token entropy": (
        "Section 3.3",
        "the entropy for randomized models tends to be lower than either the trained or control variants",
    ),
    "trained token entropy rises with depth": (
        "Section 3.3",
        "For the trained variant, the entropy increases across layers",
    ),
    "superposed inputs sparser than their Gaussian control": (
        "Section 4.2",
        "SAEs achieved much greater sparsity at a given level of explained variance for the superposed inputs "
        "relative to the Gaussian control",
    ),
    "the gap shrinks after the random MLP": (
        "Section 4.2",
        "the difference between the superposed outputs, i.e., the outputs of the MLP given the superposed inputs, "
        "and the Gaussian outputs is much smaller",
    ),
    "SAEs recover the features somewhere on the grid": (
        "Figure 5",
        "There is a 'Goldilocks zone' where SAEs near-perfectly recover the data-generating features",
    ),
}
CHANCE = 0.5
NULL_EXPLAINER = "tokens"

Result = tuple[dict[str, float], dict[str, np.ndarray]]
Results = Mapping[SaeTarget, Result]


def replicates_of(sae: SaeTarget, explainers: Sequence[str]) -> Result:
    """Point estimates and bootstrap replicates of one SAE: its held-out metrics, and per explainer
    `fuzz_auroc_<explainer>`, with the token entropy (the same for every explainer)."""
    record = json.loads(Path(sae.directory, "metrics.json").read_text())
    points = dict(record["metrics"])
    replicates = {name: np.asarray(values, dtype=float) for name, values in record["bootstrap"]["replicates"].items()}
    for explainer in explainers:
        summary = json.loads(Path(sae.autointerp_directory(explainer), "summary.json").read_text())
        for column in ("fuzz_auroc", "entropy_normalised"):
            name = column if column.startswith("entropy") else f"{column}_{explainer}"
            points[name] = summary[column]
            replicates[name] = np.asarray(summary["bootstrap"]["replicates"][column], dtype=float)
    return points, replicates


def independent_latent_replicates(results: Results) -> dict[SaeTarget, Result]:
    """Each SAE's latent-resampled replicates shuffled with its own seed, so that two SAEs'
    replicates combine as independent samples; held-out replicates stay paired."""
    shuffled = {}
    for index, sae in enumerate(sorted(results)):
        points, replicates = results[sae]
        rng = np.random.default_rng(index)
        shuffled[sae] = (
            points,
            {
                name: rng.permutation(values) if name.startswith(LATENT_COLUMNS) else values
                for name, values in replicates.items()
            },
        )
    return shuffled


def row(
    model: str,
    layer,
    claim: str,
    metric: str,
    comparison: str,
    estimate: float,
    replicates: np.ndarray,
    margin: float | None = None,
    above: bool = True,
) -> dict:
    """One claim: with a margin it holds where the interval lies inside +-margin; without, where it
    lies above zero (`above`) or below it."""
    low, high = percentile_interval(replicates)
    if margin is not None:
        holds = -margin <= low and high <= margin
    else:
        holds = bool(low > 0) if above else bool(high < 0)
    source, words = PAPER[claim]
    return dict(
        zip(COLUMNS, (model, layer, claim, metric, comparison, estimate, low, high, margin, holds, source, words))
    )


class ClaimSaes:
    """The SAEs of the claims by (model, variant, layer) at one sweep point."""

    def __init__(self, results: Results, point: SaeHyperparameters | None = None):
        self.all = independent_latent_replicates(results)
        self._select(point or _most_common_point(results))

    def _select(self, point: SaeHyperparameters) -> None:
        self.point = point
        self.at = {
            (sae.model, sae.variant, sae.layer): value
            for sae, value in self.all.items()
            if sae.hyperparameters == point
        }

    def at_point(self, point: SaeHyperparameters) -> ClaimSaes:
        """The same SAEs (their replicates shuffled once) at another sweep point."""
        other = copy.copy(self)
        other._select(point)
        return other

    def models(self) -> list[str]:
        return sorted({model for model, _, _ in self.at})

    def variants(self, model: str) -> list[str]:
        return sorted({v for m, v, _ in self.at if m == model}, key=lambda v: (v in LEARNED, v))

    def layers(self, model: str, variants: Sequence[str], column: str) -> list[int]:
        """The layers where every one of `variants` has `column`."""
        candidates = sorted({layer for m, _, layer in self.at if m == model})
        return [
            layer
            for layer in candidates
            if all(column in self.at.get((model, v, layer), ({}, {}))[0] for v in variants)
        ]

    def value(self, model: str, variant: str, layer: int, column: str) -> tuple[float, np.ndarray]:
        points, replicates = self.at[(model, variant, layer)]
        return points[column], replicates[column]

    def mean_over_layers(
        self, model: str, variant: str, layers: Sequence[int], column: str
    ) -> tuple[float, np.ndarray]:
        values = [self.value(model, variant, layer, column) for layer in layers]
        return float(np.mean([v[0] for v in values])), np.mean([v[1] for v in values], axis=0)


def _most_common_point(results: Results) -> SaeHyperparameters:
    points = [sae.hyperparameters for sae in results]
    return max(set(points), key=points.count) if points else SaeHyperparameters(0, 0)


def _combine(function: Callable, *values: tuple[float, np.ndarray]) -> tuple[float, np.ndarray]:
    """`function` of point estimates, and of replicates replicate by replicate."""
    return float(function(*(v[0] for v in values))), function(*(v[1] for v in values))


def slope(layers: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Least-squares slope over `layers`; values: (layers,) or (layers, replicates)."""
    x = np.asarray(layers, dtype=float)
    x = x - x.mean()
    values = np.asarray(values, dtype=float)
    return np.tensordot(x, values - values.mean(0), axes=(0, 0)) / (x**2).sum()


def _slope_of(values: Sequence[tuple[float, np.ndarray]], x: Sequence[float]) -> tuple[float, np.ndarray]:
    return float(slope(x, np.array([v[0] for v in values]))), slope(x, np.array([v[1] for v in values]))


def similarity_claims(study: ClaimSaes, metrics: Mapping[str, str], margins: Mapping[str, float]) -> list[dict]:
    """`metrics`: label -> column (the figure's reading of EV and cosine, and each explainer's AUROC);
    `margins`: label -> margin (AUROC columns take the margin of 'fuzz_auroc')."""
    rows = []
    for model in study.models():
        # Every random variant, and the control (other learned variants make no claim here).
        for variant in [v for v in study.variants(model) if VARIANTS[v].random_weights or v == "control"]:
            claim = "trained and control similar" if variant == "control" else "trained and random similar"
            for label, column in metrics.items():
                for layer in study.layers(model, ["trained", variant], column):
                    estimate, replicates = _combine(
                        np.subtract,
                        study.value(model, "trained", layer, column),
                        study.value(model, variant, layer, column),
                    )
                    margin = margins[label if label in margins else "fuzz_auroc"]
                    rows.append(row(model, layer, claim, column, f"trained - {variant}", estimate, replicates, margin))
    return rows


def closer_than_control_claims(study: ClaimSaes, metrics: Mapping[str, str]) -> list[dict]:
    """|trained - control| - |trained - random| per layer: positive where the random variant is
    closer to the trained model than the control is."""
    rows = []
    for model in study.models():
        randoms = [v for v in study.variants(model) if v not in LEARNED]
        for variant in randoms:
            for column in metrics.values():
                for layer in study.layers(model, ["trained", "control", variant], column):
                    estimate, replicates = _combine(
                        lambda t, c, r: np.abs(t - c) - np.abs(t - r),
                        *(study.value(model, v, layer, column) for v in ("trained", "control", variant)),
                    )
                    rows.append(
                        row(
                            model,
                            layer,
                            "random closer to trained than the control",
                            column,
                            f"|trained - control| - |trained - {variant}|",
                            estimate,
                            replicates,
                        )
                    )
    return rows


def depth_claims(study: ClaimSaes, metrics: Mapping[str, str], auroc_columns: Sequence[str]) -> list[dict]:
    """Slopes over layers: the control's EV and cosine falling, every other variant's rising; every
    variant's AUROC falling."""
    rows = []
    for model in study.models():
        for variant in study.variants(model):
            for column in list(metrics.values()) + list(auroc_columns):
                layers = study.layers(model, [variant], column)
                if len(layers) < 2:
                    continue
                estimate, replicates = _slope_of(
                    [study.value(model, variant, layer, column) for layer in layers], layers
                )
                if column.startswith("fuzz_auroc"):
                    claim, above = "AUROC falls with depth", False
                elif variant == "control":
                    claim, above = "control worsens with depth", False
                else:
                    claim, above = "others improve with depth", True
                rows.append(
                    row(model, "all", claim, column, f"{variant}: slope per layer", estimate, replicates, above=above)
                )
    return rows


def step0_claims(study: ClaimSaes, columns: Sequence[str]) -> list[dict]:
    """Mean over layers of |trained - step0| - |trained - re-randomised|, per model: positive where
    the re-randomised variant is closer to the trained model."""
    rows = []
    for model in study.models():
        rerandomised = [v for v in study.variants(model) if v in RESAMPLED]
        if "step0" not in study.variants(model) or "trained" not in study.variants(model):
            continue
        for variant in rerandomised:
            for column in columns:
                layers = study.layers(model, ["trained", "step0", variant], column)
                if not layers:
                    continue
                estimate, replicates = _combine(
                    lambda t, s, r: np.abs(t - s) - np.abs(t - r),
                    *(study.mean_over_layers(model, v, layers, column) for v in ("trained", "step0", variant)),
                )
                rows.append(
                    row(
                        model,
                        "all",
                        "re-randomised closer to trained than step0",
                        column,
                        f"mean over layers of |trained - step0| - |trained - {variant}|",
                        estimate,
                        replicates,
                    )
                )
    return rows


def model_size_claims(study: ClaimSaes, auroc_columns: Sequence[str], parameters: Mapping[str, float]) -> list[dict]:
    """Per variant but the control: the slope of the mean AUROC over layers against log10 of the
    model's parameter count."""
    rows = []
    models = sorted((m for m in study.models() if m in parameters), key=parameters.__getitem__)
    variants = sorted({v for m in models for v in study.variants(m)} - {"control"})
    for variant in variants:
        for column in auroc_columns:
            present = [m for m in models if study.layers(m, [variant], column)]
            if len(present) < 2:
                continue
            estimate, replicates = _slope_of(
                [study.mean_over_layers(m, variant, study.layers(m, [variant], column), column) for m in present],
                [np.log10(parameters[m]) for m in present],
            )
            rows.append(
                row(
                    ", ".join(present),
                    "all",
                    "AUROC rises with model size",
                    column,
                    f"{variant}: slope of the mean over layers per decade of parameters",
                    estimate,
                    replicates,
                )
            )
    return rows


def null_explainer_claims(study: ClaimSaes, margin: float) -> list[dict]:
    """The control's AUROC with the token-identity explainer minus chance, within +-margin."""
    column = f"fuzz_auroc_{NULL_EXPLAINER}"
    rows = []
    for model in study.models():
        for layer in study.layers(model, ["control"], column):
            estimate, replicates = study.value(model, "control", layer, column)
            rows.append(
                row(
                    model,
                    layer,
                    "control at chance for the null explainer",
                    column,
                    "control - 0.5",
                    estimate - CHANCE,
                    replicates - CHANCE,
                    margin,
                )
            )
    return rows


def sweep_ordering_claims(study: ClaimSaes, metrics: Mapping[str, str]) -> list[dict]:
    """Figure 11: every pair of variants whose mean over layers differs at the study's own point
    (interval excluding zero) keeps its order at each other sweep point, over the layers both points
    have. The number is the smallest such gap, oriented as at the study's point."""
    rows = []
    for model in study.models():
        variants = study.variants(model)
        for point in sorted({sae.hyperparameters for sae in study.all if sae.model == model} - {study.point}):
            swept = study.at_point(point)
            for column in metrics.values():
                layers = sorted(set(study.layers(model, variants, column)) & set(swept.layers(model, variants, column)))
                if not layers:
                    continue

                def gap(saes: ClaimSaes, higher: str, lower: str, model=model, column=column, layers=layers):
                    return _combine(
                        np.subtract,
                        saes.mean_over_layers(model, higher, layers, column),
                        saes.mean_over_layers(model, lower, layers, column),
                    )

                ordered = []
                for i, first in enumerate(variants):
                    for second in variants[i + 1 :]:
                        low, high = percentile_interval(gap(study, first, second)[1])
                        if low > 0 or high < 0:
                            ordered.append((first, second) if low > 0 else (second, first))
                if not ordered:
                    continue
                gaps = [gap(swept, higher, lower) for higher, lower in ordered]
                rows.append(
                    row(
                        model,
                        "all",
                        "variant ordering kept across the sweep",
                        column,
                        f"{point.label}: smallest gap of the {len(ordered)} pairs ordered at {study.point.label}, "
                        f"layers {', '.join(map(str, layers))}",
                        float(min(g[0] for g in gaps)),
                        np.min([g[1] for g in gaps], axis=0),
                    )
                )
    return rows


def _worst_gap(
    study: ClaimSaes, model: str, layers: Sequence[int], column: str, higher: Sequence[str], lower: Sequence[str]
) -> tuple[float, np.ndarray]:
    """min over layers of (min over `higher` - max over `lower`), with its bootstrap replicates."""
    estimates, replicates = [], []
    for layer in layers:
        high = [study.value(model, v, layer, column) for v in higher]
        low = [study.value(model, v, layer, column) for v in lower]
        estimates.append(min(v[0] for v in high) - max(v[0] for v in low))
        replicates.append(np.min([v[1] for v in high], axis=0) - np.max([v[1] for v in low], axis=0))
    return float(min(estimates)), np.min(replicates, axis=0)


def entropy_claims(study: ClaimSaes, column: str = "entropy_normalised") -> list[dict]:
    """Per model, over all its layers: the control's token entropy highest, the random variants'
    lowest, and the trained model's rising with depth."""
    rows = []
    for model in study.models():
        variants = [v for v in study.variants(model) if study.layers(model, [v], column)]
        layers = study.layers(model, variants, column)
        if not variants or not layers:
            continue
        randoms = [v for v in variants if v not in LEARNED]
        kept = [v for v in LEARNED if v in variants]
        claims = []
        if "control" in variants and len(variants) > 1:
            others = [v for v in variants if v != "control"]
            claims.append(
                (
                    "control has the highest token entropy",
                    f"control - max({', '.join(others)})",
                    _worst_gap(study, model, layers, column, ["control"], others),
                )
            )
        if randoms and kept:
            claims.append(
                (
                    "random variants have the lowest token entropy",
                    f"min({', '.join(kept)}) - max({', '.join(randoms)})",
                    _worst_gap(study, model, layers, column, kept, randoms),
                )
            )
        if "trained" in variants and len(layers) > 1:
            trained = [study.value(model, "trained", layer, column) for layer in layers]
            claims.append(
                ("trained token entropy rises with depth", "slope over layers (per layer)", _slope_of(trained, layers))
            )
        rows += [row(model, "all", claim, column, statistic, *estimate) for claim, statistic, estimate in claims]
    return rows


def claims_table(
    results: Results,
    metrics: Mapping[str, str],
    margins: Mapping[str, float],
    *,
    point: SaeHyperparameters | None = None,
    parameters: Mapping[str, float] | None = None,
    toy_rows: Sequence[dict] = (),
) -> pd.DataFrame:
    """Every claim on `results` (the study's SAEs at `point`, and the sweep's at the others):
    `metrics` label -> column of EV, cosine and each explainer's AUROC; `parameters`: each model's
    parameter count (for the claim on model size); `toy_rows`: Section 4's (saerand.toy.claims)."""
    study = ClaimSaes(results, point)
    reconstruction = {label: column for label, column in metrics.items() if not column.startswith("fuzz_auroc")}
    auroc = [column for column in metrics.values() if column.startswith("fuzz_auroc")]
    rows = (
        similarity_claims(study, metrics, margins)
        + closer_than_control_claims(study, metrics)
        + depth_claims(study, reconstruction, auroc)
        + step0_claims(study, [*reconstruction.values(), "l1"])
        + model_size_claims(study, auroc, parameters or {})
        + null_explainer_claims(study, margins["fuzz_auroc"])
        + sweep_ordering_claims(study, reconstruction)
        + entropy_claims(study)
        + list(toy_rows)
    )
    return pd.DataFrame(rows, columns=COLUMNS)
