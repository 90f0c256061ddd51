"""Text through `datasets`, tokenized into fixed-length sequences the way sparsify does it."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
from datasets import load_dataset
from sparsify.data import chunk_and_tokenize
from tqdm.auto import tqdm

from .fetch.offline import local_dataset_spec

# Documents tokenized per round; we stop as soon as enough sequences exist.
_DOCUMENTS_PER_ROUND = 20_000


SCRIPT_DATASET_ERROR = "Dataset scripts are no longer supported"


def load_text_dataset(spec: dict[str, Any]):
    """A validated `datasets.train`/`eval` spec's text. One code path for hub data (RedPajama's JSON-lines files, read from their prefetched copy)
    and local files (the offline default)."""
    spec = local_dataset_spec(spec)
    try:
        return load_dataset(
            spec["path"],
            name=spec.get("name"),
            revision=spec.get("revision"),
            data_files=spec.get("data_files"),
            split=spec["split"],
            **spec["load_kwargs"],
        )
    except RuntimeError as err:
        if SCRIPT_DATASET_ERROR not in str(err):
            raise
        raise RuntimeError(
            f"dataset {spec['path']!r} is a loading script, which datasets {datasets.__version__} refuses: "
            f"load its data files instead (path: json or parquet, data_files: "
            f"hf://datasets/{spec['path']}/<files>, or revision: refs/convert/parquet)"
        ) from err


def token_sequences(
    spec: dict[str, Any],
    tokenizer,
    context_length: int,
    n_tokens: int | None,
    *,
    skip_tokens: int = 0,
    shuffle_seed: int | None = None,
) -> np.ndarray:
    """Sequences [skip, skip + n) of the dataset's token stream (int32, shape (n, context_length)),
    with skip = skip_tokens // context_length and n = n_tokens // context_length.

    n_tokens None takes the whole split. The stream: the documents in a random order seeded by
    `shuffle_seed` (None keeps the stored order, which for RedPajama is source by source), joined
    with EOS (each tokenized batch's text starting with one) and cut into sequences of `context_length`, so a
    sequence holds an EOS wherever a document boundary falls in it (sparsify.data.chunk_and_tokenize),
    tokenizing only as many documents as needed. A given (spec, tokenizer, seed) always yields the
    same stream, so disjoint [skip, skip + n) ranges of it are disjoint sets of text.
    """
    dataset = load_text_dataset(spec)
    text_column = spec["text_column"]
    if text_column not in dataset.column_names:
        raise ValueError(
            f"dataset {spec['path']!r} has no column {text_column!r} (columns: {dataset.column_names}); set text_column"
        )
    dataset = dataset.select_columns([text_column])
    if shuffle_seed is not None:
        dataset = dataset.shuffle(seed=shuffle_seed)
    skip = skip_tokens // context_length
    stop = float("inf") if n_tokens is None else skip + n_tokens // context_length
    parts: list[np.ndarray] = []
    have = 0
    with tqdm(total=None if n_tokens is None else stop, desc="tokenizing", unit="seq") as progress:
        for start in range(0, len(dataset), _DOCUMENTS_PER_ROUND):
            block = dataset.select(range(start, min(start + _DOCUMENTS_PER_ROUND, len(dataset))))
            chunked = chunk_and_tokenize(
                block,
                tokenizer,
                format="numpy",
                num_proc=1,
                text_key=text_column,
                max_seq_len=context_length,
            )
            ids = np.asarray(chunked["input_ids"], dtype=np.int32)
            parts.append(ids)
            have += len(ids)
            progress.update(len(ids))
            if have >= stop:
                break
    if have < stop and n_tokens is not None:
        raise ValueError(
            f"dataset {spec['path']!r} split {spec['split']!r} yields {have * context_length} "
            f"tokens, fewer than the {stop * context_length} requested "
            f"({skip * context_length} skipped + {n_tokens // context_length * context_length})"
        )
    stream = np.concatenate(parts)
    return stream[skip:] if n_tokens is None else stream[skip:stop]
