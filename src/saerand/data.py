"""Text through `datasets`, tokenized into fixed-length sequences the way sparsify does it."""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import load_dataset
from sparsify.data import chunk_and_tokenize
from tqdm.auto import tqdm

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
