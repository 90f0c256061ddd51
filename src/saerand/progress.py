"""Resumable progress of a long job: results appended one by one as JSON lines in a folder beside
the job's output, read back when a killed or timed-out job runs again, so it continues where it
stopped. The folder holds the fingerprint of what it was made under (the job's result-defining
settings); progress made under another is discarded."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from .atomic import write_text


def resume_progress(progress: str | Path, fingerprint: str) -> Path:
    """The progress folder, kept where it was made under `fingerprint`, emptied otherwise. The
    fingerprint is written atomically: a job killed while writing it leaves the old one, never a
    torn one that would discard every finished entry."""
    progress = Path(progress)
    recorded = progress / "settings.json"
    if not (recorded.exists() and recorded.read_text() == fingerprint):
        shutil.rmtree(progress, ignore_errors=True)
        write_text(recorded, fingerprint)
    return progress


class JsonLinesLog:
    """Entries appended as JSON lines, flushed one by one, read back by `key`: the latest entry of a
    key wins, and one for which `undone` is true removes it (it is to be done again). A torn line
    (a killed job was writing it) is skipped, and the entries after it still count."""

    def __init__(
        self,
        path: str | Path,
        key: Callable[[dict[str, Any]], Hashable],
        undone: Callable[[dict[str, Any]], bool] = lambda entry: False,
    ):
        self.path, self.key, self.undone = Path(path), key, undone
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[Hashable, dict[str, Any]] = {}
        text = self.path.read_text() if self.path.exists() else ""
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._record(entry)
        if text and not text.endswith("\n"):
            self._append("\n")  # end the torn line, so the next entry starts on its own

    def _record(self, entry: dict[str, Any]) -> None:
        if self.undone(entry):
            self.done.pop(self.key(entry), None)
        else:
            self.done[self.key(entry)] = entry

    def add(self, entry: dict[str, Any]) -> None:
        """Record `entry` as its key's outcome in this run (an undone one is done again next run)."""
        self.done[self.key(entry)] = entry
        self._append(json.dumps(entry) + "\n")

    def _append(self, text: str) -> None:
        with open(self.path, "a") as handle:
            handle.write(text)
            handle.flush()
