"""Text through `datasets`, tokenized into fixed-length sequences the way sparsify does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from datasets import load_dataset
from sparsify.data import chunk_and_tokenize
from tqdm.auto import tqdm

from .atomic import atomic_directory

# Documents tokenized per round; we stop as soon as enough sequences exist.
_DOCUMENTS_PER_ROUND = 20_000


def load_text_dataset(spec: dict[str, Any]):
    """One code path for hub data (RedPajama) and local files (the offline default)."""
    return load_dataset(
        spec["path"],
        name=spec.get("name"),
        revision=spec.get("revision"),
        data_files=spec.get("data_files"),
        split=spec["split"],
        **spec.get("load_kwargs", {}),
    )


def token_sequences(
    spec: dict[str, Any], tokenizer, context_length: int, n_tokens: int | None
) -> np.ndarray:
    """The first n_tokens // context_length sequences (int32, shape (n, context_length)).

    n_tokens None takes the whole split.

    Documents are joined with EOS and cut into sequences that start with EOS
    (sparsify.data.chunk_and_tokenize), tokenizing only as many documents as needed.
    """
    dataset = load_text_dataset(spec)
    text_column = spec.get("text_column", "text")
    if text_column not in dataset.column_names:
        raise ValueError(
            f"dataset {spec['path']!r} has no column {text_column!r} "
            f"(columns: {dataset.column_names}); set text_column"
        )
    dataset = dataset.select_columns([text_column])
    n_sequences = float("inf") if n_tokens is None else n_tokens // context_length
    parts: list[np.ndarray] = []
    have = 0
    with tqdm(total=None if n_tokens is None else n_sequences, desc="tokenizing", unit="seq") as progress:
        for start in range(0, len(dataset), _DOCUMENTS_PER_ROUND):
            block = dataset.select(range(start, min(start + _DOCUMENTS_PER_ROUND, len(dataset))))
            chunked = chunk_and_tokenize(
                block, tokenizer, format="numpy", num_proc=1, text_key=text_column,
                max_seq_len=context_length,
            )
            ids = np.asarray(chunked["input_ids"], dtype=np.int32)
            parts.append(ids)
            have += len(ids)
            progress.update(len(ids))
            if have >= n_sequences:
                break
    if n_tokens is None:
        return np.concatenate(parts)
    if have < n_sequences:
        raise ValueError(
            f"dataset {spec['path']!r} split {spec['split']!r} yields {have * context_length} "
            f"tokens, fewer than the {n_sequences * context_length} requested"
        )
    return np.concatenate(parts)[:n_sequences]


def save_token_store(path: str | Path, sequences: np.ndarray, attrs: dict[str, Any]) -> None:
    """Tokenized sequences as a zarr store, published atomically with `complete` set last."""
    with atomic_directory(path) as staging:
        group = zarr.open_group(staging, mode="w", zarr_format=3)
        group.create_array("tokens", data=sequences.astype(np.int32), chunks=(min(len(sequences), 4096), sequences.shape[1]))
        group.attrs.update({**attrs, "n_sequences": len(sequences), "context_length": sequences.shape[1]})
        group.attrs["complete"] = True


def load_token_store(path: str | Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    group = zarr.open_group(path, mode="r")
    if group.attrs.get("complete") is not True:
        raise RuntimeError(f"token store {path} was not completed: rebuild it")
    tokens = group["tokens"]
    stop = tokens.shape[0] if stop is None else stop
    if not 0 <= start < stop <= tokens.shape[0]:
        raise ValueError(f"sequences [{start}, {stop}) are outside token store {path} ({tokens.shape[0]} sequences)")
    return tokens[start:stop]
