"""A latent browser in the manner of Neuronpedia and sae-vis: static HTML pages, one per
auto-interpreted SAE, listing its sampled latents with their explanation, fuzzing and detection
AUROC (each with a bootstrap interval over the latent's scored samples), token entropy, an
activation histogram, and their top and per-quantile activating examples with each token shaded by
its activation; an index of the SAEs, and per (layer, SAE size) a page that puts the trained
variant's latents beside each random variant's.

The examples are the ones the SAE was scored on: delphi's records from its latent cache (top
examples: a latent's windows by top activation; per quantile: the test examples delphi drew from
each quantile of them). The histogram counts every activation of the latent in the cache.

sae-vis and sae-dashboard, the visualizers users know, do not fit here: they recompute activations
with a TransformerLens model and an SAELens SAE rather than read the examples the SAE was scored on,
pin older transformers/datasets than the study's, and their pages load d3 and Plotly from CDNs.
These pages load nothing: inline CSS, inline SVG, no scripts, every text escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_directory
from .autointerp.figures import latent_cache, window
from .autointerp.run import latent_dataset
from .autointerp.scoring import SCORERS
from .intervals import percentile_interval, resample_counts
from .settings import AutointerpSettings
from .study import SaeTarget
from .variant_registry import VARIANTS, label

SHADES = 10  # activation levels, relative to the latent's highest (as delphi normalises them)
BINS = 24  # activation histogram


def _order(sae: SaeTarget) -> tuple:
    """Pages and columns by layer and size, then variant: trained first (the registry's order)."""
    return (sae.layer, sae.expansion_factor, sae.k, list(VARIANTS).index(sae.variant))


def weighted_auroc(activating: Sequence[bool], probability: Sequence[float], weights: np.ndarray) -> np.ndarray:
    """AUROC of the samples under each row of `weights` (resamples x samples): the weighted
    Mann-Whitney statistic, as roc_auc_score with sample_weight, for all rows in one product
    (NaN where a row weighs no activating or no non-activating sample)."""
    activating = np.asarray(activating, dtype=bool)
    probability = np.asarray(probability, dtype=np.float64)
    above = probability[activating][:, None] - probability[~activating][None, :]
    wins = (above > 0) + 0.5 * (above == 0)
    positive, negative = weights[:, activating], weights[:, ~activating]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.einsum("ri,ij,rj->r", positive, wins, negative) / (positive.sum(1) * negative.sum(1))


def auroc_interval(activating: Sequence[bool], probability: Sequence[float], resamples: int, seed: int):
    """95% percentile bootstrap interval of one latent's AUROC, its scored samples resampled."""
    if len(set(activating)) < 2:
        return float("nan"), float("nan")
    return percentile_interval(
        weighted_auroc(activating, probability, resample_counts(len(activating), resamples, seed))
    )


@dataclass
class LatentView:
    """What a latent's entry shows besides its scores."""

    peak: float  # its highest activation in the cache
    frequency: float  # fraction of the cache's tokens it fires on
    histogram: tuple[list[int], list[float]]  # counts, bin edges over (0, peak]
    top: list[tuple[list[str], list[float]]]  # its most activating windows: (tokens, activations)
    quantiles: dict[int, list[tuple[list[str], list[float]]]]  # delphi's test examples per quantile (0: highest)


def latent_views(
    raw_dir: str | Path,
    module: str,
    tokenizer,
    settings: AutointerpSettings,
    latents: set[int],
    top: int,
    per_quantile: int,
) -> dict[int, LatentView]:
    """latent -> its view, from the latent cache the SAE (`module`) was scored on."""
    dataset, _ = latent_dataset(raw_dir, module, tokenizer, settings)
    activations = {
        data.latent.latent_index: data.activation_data.activations.float().numpy()
        for buffer in dataset.buffers
        for data in buffer
        if data.latent.latent_index in latents
    }
    views = {}
    for record in dataset:
        latent = record.latent.latent_index
        if latent not in latents:
            continue
        peak = float(activations[latent].max())
        counts, edges = np.histogram(activations[latent], bins=BINS, range=(0.0, peak))
        quantiles: dict[int, list] = {}
        for example in record.test:
            drawn = quantiles.setdefault(int(example.quantile), [])
            if len(drawn) < per_quantile:
                drawn.append(window(example, tokenizer))
        views[latent] = LatentView(
            peak,
            float(record.per_token_frequency),
            (counts.tolist(), edges.tolist()),
            [window(example, tokenizer) for example in record.examples[:top]],
            quantiles,
        )
    return views


def scored_latents(sae: SaeTarget, explainer: str, settings: AutointerpSettings) -> tuple[list[dict], dict]:
    """The SAE's latents.jsonl entries in draw order, each scored one with `<scorer>_auroc_low` and
    `_high` (its samples resampled with the study's seed and resamples), and its summary.json."""
    directory = Path(sae.autointerp_directory(explainer))
    entries = [json.loads(line) for line in (directory / "latents.jsonl").read_text().splitlines()]
    # Without a scored latent, samples.csv has no columns.
    scored = any("failed" not in entry for entry in entries)
    by_latent = dict(list(pd.read_csv(directory / "samples.csv").groupby(["latent", "scorer"]))) if scored else {}
    for entry in entries:
        for scorer in SCORERS:
            rows = by_latent.get((entry["latent"], scorer))
            low, high = (
                (math.nan, math.nan)
                if rows is None
                else auroc_interval(
                    rows["activating"].tolist(),
                    rows["probability"].tolist(),
                    settings.bootstrap_resamples,
                    settings.seed,
                )
            )
            entry[f"{scorer}_auroc_low"], entry[f"{scorer}_auroc_high"] = low, high
    return entries, json.loads((directory / "summary.json").read_text())


# Rendering. Shades run from pale to deep orange, Appendix D's colour map.
def _shade(level: int) -> str:
    pale, deep = np.array([254, 237, 222]), np.array([217, 72, 1])
    rgb = np.rint(pale + (deep - pale) * (level - 1) / (SHADES - 1)).astype(int)
    return "#" + "".join(f"{channel:02x}" for channel in rgb)


STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em auto;max-width:1200px;padding:0 1em;color:#222}"
    "table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;"
    "vertical-align:top}th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".num,.nw{white-space:nowrap}"
    ".ex{font:12px/1.6 ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere;margin:1px 0}"
    ".ex .mx{display:inline-block;width:4em;color:#777}mark{color:inherit;border-radius:2px}"
    "section{border-top:1px solid #ccc;margin-top:1em}.stats{color:#555}.expl{font-style:italic}"
    "svg{display:block}footer{margin-top:2em;color:#777;font-size:12px}.cmp td{width:20%}th .stats{font-weight:normal}"
    + "".join(f"mark.a{level}{{background:{_shade(level)}}}" for level in range(1, SHADES + 1))
)


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(record: Mapping[str, Any], name: str) -> str:
    """`record[name]` with its interval (`<name>_low`, `<name>_high`) where it has one."""
    point, low, high = record[name], record[f"{name}_low"], record[f"{name}_high"]
    return f"{_number(point)} [{_number(low)}, {_number(high)}]" if math.isfinite(low) else _number(point)


def shaded(tokens: Sequence[str], activations: Sequence[float], peak: float) -> str:
    """One example: its peak activation, then its tokens, each active one shaded by its activation
    relative to `peak` (levels 1 to SHADES) with the activation as its tooltip."""
    parts = [f'<div class="ex"><span class="mx">{_number(max(activations, default=0.0))}</span>']
    for token, activation in zip(tokens, activations):
        text = _text(token.replace("\n", "↵").replace("\t", "→"))
        if activation > 0:
            level = min(SHADES, max(1, math.ceil(SHADES * activation / peak)))
            parts.append(f'<mark class="a{level}" title="{activation:.3g}">{text}</mark>')
        else:
            parts.append(text)
    return "".join(parts) + "</div>"


def histogram_svg(counts: Sequence[int], edges: Sequence[float], width: int = 240, height: int = 56) -> str:
    """The activation histogram: bars over (0, peak], the highest count above, the axis below."""
    top = max(counts, default=0) or 1
    step = width / max(len(counts), 1)
    bars = "".join(
        f"M{i * step:.1f} {height + 12}v{-height * c / top:.1f}h{step - 1:.1f}v{height * c / top:.1f}z"
        for i, c in enumerate(counts)
        if c
    )
    return (
        f'<svg width="{width}" height="{height + 26}" font-size="10" role="img" aria-label="activation histogram">'
        f'<text x="0" y="9">count (max {top})</text><path d="{bars}" fill="#e6550d"/>'
        f'<text x="0" y="{height + 24}">0</text><text x="{width / 2}" y="{height + 24}" text-anchor="middle">'
        f'activation</text><text x="{width}" y="{height + 24}" text-anchor="end">{_number(edges[-1])}</text></svg>'
    )


def page(title: str, body: str, provenance: Mapping[str, Any]) -> str:
    """A whole page: inline style, no scripts, the provenance in a <meta> and the footer."""
    versions = provenance.get("versions", {})
    generator = f"saerand {versions.get('saerand', '')}".strip()
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
        f'<meta name="generator" content="{_text(generator)}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
        f"<body>{body}<footer><details><summary>Provenance</summary><pre>"
        f"{_text(json.dumps(provenance, indent=1, default=str))}</pre></details></footer></body></html>"
    )


def _label(sae: SaeTarget) -> str:
    return f"{label(sae.variant)}, layer {sae.layer}, x{sae.expansion_factor}-k{sae.k}"


def sae_page_name(sae: SaeTarget) -> str:
    return f"{sae.variant}_x{sae.expansion_factor}-k{sae.k}_layer{sae.layer}.html"


def comparison_page_name(sae: SaeTarget) -> str:
    return f"compare_x{sae.expansion_factor}-k{sae.k}_layer{sae.layer}.html"


def _scores(entry: dict) -> str:
    return " · ".join(f"{scorer} AUROC {_interval(entry, f'{scorer}_auroc')}" for scorer in SCORERS)


def _summary_line(summary: dict) -> str:
    means = " · ".join(f"mean {scorer} AUROC {_interval(summary, f'{scorer}_auroc')}" for scorer in SCORERS)
    return (
        f'<p class="stats">{summary["scored"]} of {summary["selected"]} sampled latents scored'
        f" ({summary['failed']} failed) · {means} · mean token entropy {_number(summary['entropy_nats'])} nats</p>"
    )


def sae_page(
    sae: SaeTarget,
    explainer: str,
    entries: list[dict],
    summary: dict,
    views: Mapping[int, LatentView],
    provenance: Mapping[str, Any],
) -> str:
    """One SAE's page: a table of its sampled latents, then one section per latent."""
    rows, sections = [], []
    for entry in entries:
        latent = entry["latent"]
        if "failed" in entry:
            rows.append(f'<tr><td>{latent}</td><td colspan="5">failed: {_text(entry["failed"])}</td></tr>')
            continue
        view = views[latent]
        rows.append(
            f'<tr><td><a href="#l{latent}">{latent}</a></td><td class="expl">{_text(entry["explanation"])}</td>'
            + "".join(f'<td class="num">{_interval(entry, f"{s}_auroc")}</td>' for s in SCORERS)
            + f'<td class="num">{_number(entry["entropy_nats"])}</td>'
            f'<td class="num">{_number(100 * view.frequency, 3)}</td></tr>'
        )
        parts = [
            f'<section id="l{latent}"><h2>Latent {latent}</h2><p class="expl">{_text(entry["explanation"])}</p>',
            f'<p class="stats">{_scores(entry)} · token entropy {_number(entry["entropy_nats"])} nats'
            f" ({_number(entry['entropy_normalised'])} normalised, {entry['distinct_tokens']} distinct tokens"
            f" over {entry['activating_positions']} positions)</p>",
            f'<p class="stats">fires on {_number(100 * view.frequency, 3)}% of tokens, peak {_number(view.peak)}</p>',
            histogram_svg(*view.histogram),
            "<h3>Top activations</h3>",
            *(shaded(tokens, acts, view.peak) for tokens, acts in view.top),
        ]
        for quantile, examples in sorted(view.quantiles.items()):
            parts.append(
                f"<h4>Quantile {quantile + 1} of {len(view.quantiles)}{' (highest)' if quantile == 0 else ''}</h4>"
            )
            parts += [shaded(tokens, acts, view.peak) for tokens, acts in examples]
        sections.append("".join(parts) + "</section>")
    head = "".join(f"<th>{s} AUROC [95%]</th>" for s in SCORERS)
    body = (
        f'<p><a href="index.html">All SAEs</a> · <a href="{comparison_page_name(sae)}">Compare variants at this layer</a></p>'
        f"<h1>{_text(sae.model)}: {_text(_label(sae))}</h1><p>{_text(explainer)} explainer</p>{_summary_line(summary)}"
        f'<table class="latents"><tr><th>latent</th><th>explanation</th>{head}<th>entropy (nats)</th>'
        f"<th>% tokens</th></tr>{''.join(rows)}</table>{''.join(sections)}"
    )
    return page(f"{sae.model} {_label(sae)}: latents", body, provenance)


def comparison_page(
    saes: Sequence[SaeTarget],
    explainer: str,
    scored: Mapping[SaeTarget, tuple[list[dict], dict]],
    views: Mapping[SaeTarget, Mapping[int, LatentView]],
    provenance: Mapping[str, Any],
) -> str:
    """One layer's SAEs side by side, the trained variant first: row i holds each SAE's i-th scored
    latent (the draw order), with its explanation, scores and top example."""
    columns = sorted(saes, key=_order)
    latents = {sae: [e for e in scored[sae][0] if "failed" not in e] for sae in columns}
    header = "".join(
        f'<th><a href="{sae_page_name(sae)}">{_text(label(sae.variant))}</a>{_summary_line(scored[sae][1])}</th>'
        for sae in columns
    )
    rows = []
    for i in range(max((len(v) for v in latents.values()), default=0)):
        cells = []
        for sae in columns:
            if i >= len(latents[sae]):
                cells.append("<td></td>")
                continue
            entry = latents[sae][i]
            view = views[sae][entry["latent"]]
            cells.append(
                f'<td><a href="{sae_page_name(sae)}#l{entry["latent"]}">latent {entry["latent"]}</a>'
                f' <span class="expl">{_text(entry["explanation"])}</span><div class="stats">fuzz AUROC'
                f" {_interval(entry, 'fuzz_auroc')}"
                f" · entropy {_number(entry['entropy_nats'])}</div>{shaded(*view.top[0], view.peak)}</td>"
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    first = columns[0]
    body = (
        f'<p><a href="index.html">All SAEs</a></p><h1>{_text(first.model)}: layer {first.layer},'
        f" x{first.expansion_factor}-k{first.k}, trained beside random variants</h1><p>{_text(explainer)} explainer;"
        f" row i holds each SAE's i-th scored latent in its seeded random draw (not a matched latent)</p>"
        f'<table class="cmp"><tr>{header}</tr>{"".join(rows)}</table>'
    )
    return page(f"{first.model} layer {first.layer}: trained and random variants", body, provenance)


def index_page(
    saes: Sequence[SaeTarget], explainer: str, scored: Mapping[SaeTarget, tuple[list[dict], dict]], provenance: dict
) -> str:
    rows = []
    for sae in saes:
        summary = scored[sae][1]
        rows.append(
            f"<tr><td class='nw'>{_text(sae.model)}</td><td>{_text(sae.variant)}</td><td class='num'>{sae.layer}</td>"
            f"<td class='nw'>x{sae.expansion_factor}-k{sae.k}</td>"
            f"<td class='num'>{summary['scored']} of {summary['selected']}</td>"
            + "".join(f"<td class='num'>{_interval(summary, f'{s}_auroc')}</td>" for s in SCORERS)
            + f'<td><a href="{sae_page_name(sae)}">latents</a></td><td><a href="{comparison_page_name(sae)}">compare</a></td></tr>'
        )
    head = "".join(f"<th>mean {s} AUROC [95%]</th>" for s in SCORERS)
    body = (
        f"<h1>Latent browser: {_text(saes[0].model)}, {_text(explainer)} explainer</h1>"
        "<p>Each SAE's sampled latents with their explanation, scores, activation histogram and"
        " activating examples; per layer, the trained variant's latents beside each random variant's.</p>"
        f"<table><tr><th>model</th><th>variant</th><th>layer</th><th>size</th><th>scored</th>{head}"
        f"<th></th><th></th></tr>{''.join(rows)}</table>"
    )
    return page(f"Latent browser: {saes[0].model} ({explainer})", body, provenance)


def write_browser(
    saes: Sequence[SaeTarget],
    explainer: str,
    tokenizer,
    settings: AutointerpSettings,
    output: str | Path,
    provenance: dict,
    top: int,
    per_quantile: int,
) -> dict[str, int]:
    """Every page for `saes` (one model) in `output`, published at once; returns each page's bytes."""
    saes = sorted(saes, key=_order)
    scored = {sae: scored_latents(sae, explainer, settings) for sae in saes}
    views = {
        sae: latent_views(
            latent_cache(sae),
            sae.autointerp_module,
            tokenizer,
            settings,
            {e["latent"] for e in scored[sae][0] if "failed" not in e},
            top,
            per_quantile,
        )
        for sae in saes
    }
    pages = {"index.html": index_page(saes, explainer, scored, provenance)}
    for sae in saes:
        pages[sae_page_name(sae)] = sae_page(sae, explainer, *scored[sae], views[sae], provenance)
    layers: dict[str, list[SaeTarget]] = {}
    for sae in saes:
        layers.setdefault(comparison_page_name(sae), []).append(sae)
    for name, group in layers.items():
        pages[name] = comparison_page(group, explainer, scored, views, provenance)
    with atomic_directory(output) as staging:
        for name, text in pages.items():
            (staging / name).write_text(text, encoding="utf-8")
    return {name: len(text.encode()) for name, text in pages.items()}
