"""SAE latents over held-out text, in delphi's on-disk format.

One pass of the subject model over the auto-interpretability tokens encodes every SAE's layer with
that SAE on the fly (several SAEs may read one layer: the Figure 11 sweep), as delphi's own cache does with hooks. Latents are drawn in a seeded random
order; of the first `draw` of them, the first `n_latents` with at least `min_examples` activating
example windows are kept (the authors drew 300 and kept the first 100 usable). Only the kept
latents' non-zero activations are stored, as delphi's `LatentCache.save_splits` writes them:
`{raw_dir}/{module}/{start}_{end}.safetensors` with `locations` (sequence, position, latent),
`activations` and `tokens`, and a `config.json` per module, so `delphi.latents.LatentDataset`
loads them unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file
from sparsify import SparseCoder
from tqdm.auto import tqdm

from ..atomic import atomic_directory
from ..cache import residual_stream
from ..settings import AutointerpSettings
from ..variants import SubjectModel


@dataclass
class LatentSelection:
    """Which latents of one SAE were drawn, and why some were not kept."""

    num_latents: int
    drawn: int  # latents looked at, in the seeded order, until enough were usable
    dead: int  # drawn latents that never fired on the auto-interp tokens
    too_rare: int  # drawn latents that fired in fewer than min_examples example windows
    selected: list[int]
    example_windows: list[int]  # activating example windows of each selected latent


def without_special_tokens(sequences: np.ndarray, special: set[int]) -> np.ndarray:
    """The stream of `sequences` without the `special` token ids (the BOS/EOS that separate
    documents), cut again into sequences of the same length, the last partial one dropped: what
    delphi's `filter_bos` (on by default) does before it caches latents, so no example window is
    centred on a separator."""
    stream = sequences.reshape(-1)
    stream = stream[~np.isin(stream, sorted(special))]
    length = sequences.shape[1]
    return stream[: len(stream) // length * length].reshape(-1, length)


def draw_order(num_latents: int, seed: int) -> np.ndarray:
    """Every latent in a seeded random order: the order in which latents are drawn."""
    return np.random.default_rng(seed).permutation(num_latents)


@dataclass
class _LayerLatents:
    layer: int
    sae: SparseCoder
    candidates: np.ndarray  # the first `draw` latents of the order
    is_candidate: torch.Tensor
    locations: list[np.ndarray]
    activations: list[np.ndarray]
    firing: torch.Tensor  # activations > 0 per latent, over every token


@torch.no_grad()
def collect_latents(
    subject: SubjectModel,
    sequences: np.ndarray,
    saes: dict[str, tuple[int, SparseCoder]],
    *,
    draw: int,
    seed: int,
    batch_sequences: int,
) -> dict[str, _LayerLatents]:
    """Non-zero activations of each SAE's first `draw` latents (seeded order) over `sequences`;
    `saes` maps a module name to (layer, SAE)."""
    states = {}
    for module, (layer, sae) in saes.items():
        candidates = draw_order(sae.num_latents, seed)[:draw]
        mask = torch.zeros(sae.num_latents, dtype=torch.bool, device=sae.device)
        mask[torch.from_numpy(candidates).to(sae.device)] = True
        states[module] = _LayerLatents(
            layer, sae, candidates, mask, [], [], torch.zeros(sae.num_latents, dtype=torch.long, device=sae.device)
        )
    device = next(subject.model.parameters()).device
    for start in tqdm(range(0, len(sequences), batch_sequences), desc="latents"):
        batch = torch.as_tensor(sequences[start : start + batch_sequences], dtype=torch.long, device=device)
        streams = residual_stream(subject, batch, sorted({state.layer for state in states.values()}))
        for state in states.values():
            stream = streams[state.layer]
            x = stream.reshape(-1, stream.shape[-1]).to(state.sae.device, torch.float32)
            encoded = state.sae.encode(x)
            fired = encoded.top_acts > 0
            state.firing += torch.bincount(encoded.top_indices[fired], minlength=state.sae.num_latents)
            keep = fired & state.is_candidate[encoded.top_indices]
            rows, slots = keep.nonzero(as_tuple=True)
            positions = rows.cpu().numpy()
            state.locations.append(
                np.stack(
                    [
                        start + positions // batch.shape[1],
                        positions % batch.shape[1],
                        encoded.top_indices[rows, slots].cpu().numpy(),
                    ],
                    axis=1,
                )
            )
            state.activations.append(encoded.top_acts[rows, slots].float().cpu().numpy())
    return states


def select_latents(
    state: _LayerLatents, n_latents: int, min_examples: int, context_length: int, example_context: int
) -> tuple[LatentSelection, np.ndarray, np.ndarray]:
    """The first `n_latents` drawn latents with enough activating example windows, their
    locations and activations."""
    locations = np.concatenate(state.locations) if state.locations else np.zeros((0, 3), np.int64)
    activations = np.concatenate(state.activations) if state.activations else np.zeros(0, np.float32)
    windows = (locations[:, 0] * context_length + locations[:, 1]) // example_context
    selected, counts, dead, too_rare, drawn = [], [], 0, 0, 0
    for latent in state.candidates:
        if len(selected) == n_latents:
            break
        drawn += 1
        n_windows = len(np.unique(windows[locations[:, 2] == latent]))
        if state.firing[latent] == 0:
            dead += 1
        elif n_windows < min_examples:
            too_rare += 1
        else:
            selected.append(int(latent))
            counts.append(n_windows)
    keep = np.isin(locations[:, 2], selected)
    selection = LatentSelection(state.sae.num_latents, drawn, dead, too_rare, selected, counts)
    return selection, locations[keep], activations[keep]


def save_latents(
    raw_dir: str | Path,
    module: str,
    tokens: np.ndarray,
    locations: np.ndarray,
    activations: np.ndarray,
    selection: LatentSelection,
    cache_config: dict[str, Any],
) -> None:
    """One module (SAE) of a delphi latent cache: one split covering every latent index."""
    directory = Path(raw_dir) / module
    directory.mkdir(parents=True, exist_ok=True)
    small = locations.max(initial=0) < 2**16 and selection.num_latents <= 2**16
    # safetensors writes an array's memory as it lies: only C order reads back as written.
    arrays = {
        "locations": locations.astype(np.uint16 if small else np.uint32),
        "activations": activations.astype(np.float16),
        "tokens": tokens.astype(np.int64),
    }
    save_file(
        {name: np.ascontiguousarray(array) for name, array in arrays.items()},
        directory / f"0_{selection.num_latents - 1}.safetensors",
    )
    (directory / "config.json").write_text(json.dumps(cache_config, indent=2))
    (directory / "selection.json").write_text(json.dumps(asdict(selection), indent=2))


def write_latent_cache(
    raw_dir: str | Path,
    subject: SubjectModel,
    sequences: np.ndarray,
    saes: dict[str, tuple[int, SparseCoder]],
    settings: AutointerpSettings,
    cache_config: dict[str, Any],
) -> dict[str, LatentSelection]:
    """Every SAE's sampled latents in one delphi raw directory (one module each, named by the keys
    of `saes`, which map to (layer, SAE)), published at once; returns each module's selection."""
    states = collect_latents(
        subject,
        sequences,
        saes,
        draw=settings.draw,
        seed=settings.seed,
        batch_sequences=settings.batch_sequences,
    )
    selections = {}
    with atomic_directory(raw_dir) as staging:
        for module, state in states.items():
            selection, locations, activations = select_latents(
                state, settings.latents, settings.min_examples, sequences.shape[1], settings.example_context
            )
            save_latents(staging, module, sequences, locations, activations, selection, cache_config)
            selections[module] = selection
    return selections
