"""Auto-interpretability results across SAEs: ROC curves in the style of Figures 1, 2 and 8-10,
and an Appendix D-style table of latents and their examples."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from ..aggregate import autointerp_directory
from ..config import SaeTarget
from ..plots import VARIANT_STYLE, plt, save_figure


def roc_figure(saes: Sequence[SaeTarget], explainer: str, scorer: str, path: str | Path, provenance: dict) -> None:
    """One panel per variant, one ROC curve per layer, pooled over the SAE's latents (as delphi
    pools them)."""
    variants = [v for v in VARIANT_STYLE if any(sae.variant == v for sae in saes)]
    figure, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3.2), squeeze=False, sharey=True)
    layers = sorted({sae.layer for sae in saes})
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, max(len(layers), 2)))
    for ax, variant in zip(axes[0], variants):
        for sae in sorted((s for s in saes if s.variant == variant), key=lambda s: s.layer):
            samples = pd.read_csv(Path(autointerp_directory(sae, explainer), "samples.csv"))
            samples = samples[samples["scorer"] == scorer]
            if samples["activating"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(samples["activating"], samples["probability"])
            ax.plot(fpr, tpr, color=colours[layers.index(sae.layer)], label=f"layer {sae.layer}", lw=1.2)
        ax.plot([0, 1], [0, 1], color="lightgray", ls="--", lw=0.8)
        ax.set_title(VARIANT_STYLE[variant][0])
        ax.set_xlabel("False positive rate")
    axes[0][0].set_ylabel("True positive rate")
    axes[0][-1].legend(fontsize="x-small", loc="lower right")
    figure.suptitle(f"{saes[0].model}: {scorer} ({explainer} explainer)")
    figure.tight_layout()
    save_figure(figure, path, provenance)


def examples_table(saes: Sequence[SaeTarget], explainer: str, per_sae: int) -> pd.DataFrame:
    """The first `per_sae` latents of each SAE (in the draw order): explanation, scores, entropy
    and the top explanation example, as Appendix D lists them."""
    rows = []
    for sae in saes:
        lines = Path(autointerp_directory(sae, explainer), "latents.jsonl").read_text().splitlines()
        for entry in [json.loads(line) for line in lines if "failed" not in line][:per_sae]:
            rows.append(
                {
                    "model": sae.model,
                    "variant": sae.variant,
                    "layer": sae.layer,
                    "latent": entry["latent"],
                    "explanation": entry["explanation"],
                    "fuzz_auroc": entry["fuzz_auroc"],
                    "detection_auroc": entry["detection_auroc"],
                    "entropy_nats": entry["entropy_nats"],
                    "example": entry["shown"][0] if entry["shown"] else "",
                }
            )
    return pd.DataFrame(rows)
