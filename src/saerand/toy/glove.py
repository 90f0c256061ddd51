"""GloVe word vectors from a text file (Section 4.3): the user's own, or one of glove.6B.zip's files
fetched by the workflow (saerand.fetch.download.fetch_archive, rule fetch_glove)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GLOVE_URL = "https://nlp.stanford.edu/projects/glove/"
GLOVE_CONFIG_KEY = "toy.word_vectors.glove"
# The files of glove.6B.zip (prefetch.glove) and their sizes unzipped, for the planner: a
# configured path named like one is fetched there.
GLOVE_ARCHIVE_FILES = {
    "glove.6B.50d.txt": 171_350_079,
    "glove.6B.100d.txt": 347_116_733,
    "glove.6B.200d.txt": 693_432_828,
    "glove.6B.300d.txt": 1_037_962_819,
}


def glove_hint(config_key: str = GLOVE_CONFIG_KEY) -> str:
    """Where GloVe comes from: a file on disk, or one the workflow fetches."""
    return (
        f"set the config key {config_key} to a GloVe text file on disk, or to a path ending in one of "
        f"glove.6B.zip's files ({', '.join(GLOVE_ARCHIVE_FILES)}), which rule fetch_glove downloads "
        f"there ({GLOVE_URL})"
    )


def glove_downloads(paths: list[str]) -> dict[str, str]:
    """path -> file of glove.6B.zip, for the configured GloVe paths not on disk that the zip holds."""
    return {
        path: Path(path).name for path in paths if not Path(path).exists() and Path(path).name in GLOVE_ARCHIVE_FILES
    }


def glove_vectors(
    path: str | Path,
    limit: int | None = None,
    config_key: str = GLOVE_CONFIG_KEY,
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
                        f"{path}, line {line_number}: expected a word and {n_values} numbers, got {len(values)} numbers"
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
