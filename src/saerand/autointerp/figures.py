"""Auto-interpretability results across SAEs: ROC curves in the style of Figures 1, 2 and 8-10,
and Appendix D as printed: latents with their explanation and their top activating examples, the
active tokens marked with their activations, as a table and as a figure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from ..paths import delphi_cache, latents_directory
from ..plots import plt, save_figure
from ..settings import AutointerpSettings
from ..study import SaeTarget
from ..variant_registry import VARIANTS, label
from .run import latent_dataset

TOP_EXAMPLES = 3  # Appendix D shows each latent's three most activating examples


def roc_figure(saes: Sequence[SaeTarget], explainer: str, scorer: str, path: str | Path, provenance: dict) -> None:
    """One panel per variant, one ROC curve per layer, pooled over the SAE's latents (as delphi
    pools them)."""
    variants = [v for v in VARIANTS if any(sae.variant == v for sae in saes)]
    figure, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3.2), squeeze=False, sharey=True)
    layers = sorted({sae.layer for sae in saes})
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, max(len(layers), 2)))
    for ax, variant in zip(axes[0], variants):
        for sae in sorted((s for s in saes if s.variant == variant), key=lambda s: s.layer):
            samples = pd.read_csv(Path(sae.autointerp_directory(explainer), "samples.csv"))
            samples = samples[samples["scorer"] == scorer]
            if samples["activating"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(samples["activating"], samples["probability"])
            ax.plot(fpr, tpr, color=colours[layers.index(sae.layer)], label=f"layer {sae.layer}", lw=1.2)
        ax.plot([0, 1], [0, 1], color="lightgray", ls="--", lw=0.8)
        ax.set_title(label(variant))
        ax.set_xlabel("False positive rate")
    axes[0][0].set_ylabel("True positive rate")
    axes[0][-1].legend(fontsize="x-small", loc="lower right")
    figure.suptitle(f"{saes[0].model}: {scorer} ({explainer} explainer)")
    figure.tight_layout()
    save_figure(figure, path, provenance)


def latent_cache(sae: SaeTarget) -> str:
    """The delphi latent cache an SAE was scored on: its (model, variant)'s, one module per SAE."""
    return delphi_cache(latents_directory(sae.model, sae.variant))


def window(example, tokenizer) -> tuple[list[str], list[float]]:
    """One example window of a delphi record: (tokens as text, the latent's activations)."""
    return tokenizer.batch_decode(example.tokens), example.activations.tolist()


def top_examples(raw_dir: str | Path, module: str, tokenizer, settings: AutointerpSettings, latents: set[int]) -> dict:
    """latent -> its TOP_EXAMPLES most activating windows, each (tokens as text, activations), from
    the latent cache an SAE (`module`) was scored on (delphi sorts a latent's windows by top activation)."""
    dataset, _ = latent_dataset(raw_dir, module, tokenizer, settings)
    return {
        record.latent.latent_index: [window(example, tokenizer) for example in record.examples[:TOP_EXAMPLES]]
        for record in dataset
        if record.latent.latent_index in latents
    }


def marked(tokens: Sequence[str], activations: Sequence[float]) -> str:
    """An example's text with each active token marked as <<token>>(activation), as Appendix D
    highlights them."""
    return "".join(f"<<{t}>>({a:.2f})" if a > 0 else t for t, a in zip(tokens, activations))


def examples_table(
    saes: Sequence[SaeTarget], explainer: str, per_sae: int, examples: dict | None = None
) -> pd.DataFrame:
    """The first `per_sae` latents of each SAE (in the draw order): explanation, scores, entropy,
    the top explanation example, and with `examples` ((SAE, latent) -> top_examples' list) the
    top activating examples marked (`top_1`...) with their highest activation (`top_1_max`...), as
    Appendix D lists them."""
    rows = []
    for sae in saes:
        lines = Path(sae.autointerp_directory(explainer), "latents.jsonl").read_text().splitlines()
        for entry in [json.loads(line) for line in lines if "failed" not in line][:per_sae]:
            row = {
                **sae._asdict(),
                "latent": entry["latent"],
                "explanation": entry["explanation"],
                "fuzz_auroc": entry["fuzz_auroc"],
                "detection_auroc": entry["detection_auroc"],
                "entropy_nats": entry["entropy_nats"],
                "example": entry["shown"][0] if entry["shown"] else "",
            }
            for rank, (tokens, activations) in enumerate((examples or {}).get((sae, entry["latent"]), []), 1):
                row[f"top_{rank}"] = marked(tokens, activations)
                row[f"top_{rank}_max"] = max(activations)
            rows.append(row)
    return pd.DataFrame(rows)


def appendix_d_figure(table: pd.DataFrame, examples: dict, path: str | Path, provenance: dict) -> None:
    """Appendix D's layout: per latent its explanation, then its top examples with each token shaded
    by its activation (relative to the latent's highest) and the peak activation at the line's end."""
    blocks = [
        (row, examples.get((SaeTarget(row.model, row.variant, row.layer, row.expansion_factor, row.k), row.latent), []))
        for row in table.itertuples()
    ]
    lines = sum(1 + len(top) for _, top in blocks)
    figure = plt.figure(figsize=(11, 0.32 * lines + 0.6))
    ax = figure.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_axis_off()
    renderer = figure.canvas.get_renderer()
    height = 1 / max(lines, 1)
    y = 1 - height / 2
    shade = plt.get_cmap("Oranges")
    for row, top in blocks:
        title = f"{row.model} {label(row.variant)}, layer {row.layer}, latent {row.latent}: {row.explanation}"
        ax.text(0, y, title[:160], fontsize=8, weight="bold", va="center", transform=ax.transAxes)
        y -= height
        peak = max((max(acts) for _, acts in top), default=0.0) or 1.0
        for tokens, activations in top:
            x = 0.02
            for token, activation in zip(tokens, activations):
                text = ax.text(
                    x,
                    y,
                    token.replace("\n", " ").replace("\t", " ") or " ",
                    fontsize=7,
                    family="monospace",
                    va="center",
                    transform=ax.transAxes,
                    bbox={
                        "facecolor": shade(0.15 + 0.85 * activation / peak) if activation > 0 else "none",
                        "edgecolor": "none",
                        "pad": 0.5,
                    },
                )
                x += text.get_window_extent(renderer).width / figure.bbox.width
                if x > 0.9:
                    break
            ax.text(0.92, y, f"max {max(activations):.2f}", fontsize=7, va="center", transform=ax.transAxes)
            y -= height
    save_figure(figure, path, provenance)
