"""Token stores: the tokenized sequences of a split as a zarr store, written whole or not at all
and checked whole on reading. (Tokenizing lives in saerand.data: readers need no `datasets`.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .atomic import atomic_directory
from .stores import damaged_chunk


def save_token_store(path: str | Path, sequences: np.ndarray, attrs: dict[str, Any]) -> None:
    """Tokenized sequences as a zarr store, published atomically with `complete` set last."""
    with atomic_directory(path) as staging:
        group = zarr.open_group(staging, mode="w", zarr_format=3)
        group.create_array(
            "tokens", data=sequences.astype(np.int32), chunks=(min(len(sequences), 4096), sequences.shape[1])
        )
        group.attrs.update({**attrs, "n_sequences": len(sequences), "context_length": sequences.shape[1]})
        group.attrs["complete"] = True


def load_token_store(path: str | Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    group = zarr.open_group(path, mode="r")
    if group.attrs.get("complete") is not True:
        raise RuntimeError(f"token store {path} was not completed: rebuild it")
    tokens = group["tokens"]
    n_sequences = group.attrs["n_sequences"]
    short = tokens.shape[0] != n_sequences
    problem = f"tokens does not hold n_sequences = {n_sequences} rows" if short else damaged_chunk(group, path)
    if problem:
        raise RuntimeError(
            f"token store {path} is damaged: {problem}. Remove it and run the workflow again: rule tokenize_text rebuilds it"
        )
    stop = tokens.shape[0] if stop is None else stop
    if not 0 <= start < stop <= tokens.shape[0]:
        raise ValueError(f"sequences [{start}, {stop}) are outside token store {path} ({tokens.shape[0]} sequences)")
    return tokens[start:stop]
