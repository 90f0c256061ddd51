"""GloVe word vectors from a local text file (Section 4.3): the workflow never downloads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GLOVE_URL = "https://nlp.stanford.edu/projects/glove/"
GLOVE_CONFIG_KEY = "toy.word_vectors.glove"


def glove_hint(config_key: str = GLOVE_CONFIG_KEY) -> str:
    """Where GloVe comes from: the workflow never downloads it."""
    return (f"download GloVe word vectors from {GLOVE_URL} (e.g. glove.6B.300d.txt from glove.6B.zip) "
            f"and set the config key {config_key} to the unzipped .txt file")


def glove_vectors(
    path: str | Path, limit: int | None = None, config_key: str = GLOVE_CONFIG_KEY,
) -> tuple[list[str], np.ndarray]:
    """Read a GloVe text file ("word f_1 ... f_d" per line) into (words, n_words x d float32).

    `limit` reads only the first `limit` lines. The dimension d is set by the first line; a line
    with a different number of values, or a value that is not a number, raises ValueError naming
    the line number.
    """
    path = Path(path)
    hint = glove_hint(config_key)
    if not path.exists():
        raise FileNotFoundError(f"GloVe file {path} does not exist: {hint}")
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    words: list[str] = []
    rows: list[np.ndarray] = []
    n_values: int | None = None
    try:
        with path.open(encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                if limit is not None and line_number > limit:
                    break
                if not line.strip():
                    continue
                word, *values = line.rstrip().split(" ")
                n_values = len(values) if n_values is None else n_values
                if len(values) != n_values or n_values == 0:
                    raise ValueError(
                        f"{path}, line {line_number}: expected a word and {n_values} numbers, "
                        f"got {len(values)} numbers"
                    )
                try:
                    rows.append(np.array(values, dtype=np.float32))
                except ValueError as error:
                    raise ValueError(f"{path}, line {line_number}: {error}") from error
                words.append(word)
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read GloVe file {path} ({error}): {hint}") from error
    if not rows:
        raise ValueError(f"GloVe file {path} holds no vectors: {hint}")
    return words, np.stack(rows)
