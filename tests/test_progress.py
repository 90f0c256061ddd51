"""Resumable progress: entries survive a killed writer, and progress made under other settings is not resumed."""

import json

from saerand.progress import JsonLinesLog, resume_progress


def _log(path):
    return JsonLinesLog(path, key=lambda entry: entry["id"], undone=lambda entry: entry.get("retry", False))


def test_a_torn_line_is_skipped_and_the_next_entry_starts_on_its_own_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "val' + "\n" + '{"id": 3}\n{"id": 4, "x"')
    log = _log(path)
    assert sorted(log.done) == [1, 3]  # the torn line does not hide the entries after it
    log.add({"id": 5})
    assert sorted(_log(path).done) == [1, 3, 5]
    assert path.read_text().splitlines()[-1] == '{"id": 5}'


def test_an_undone_entry_is_done_again_on_resume(tmp_path):
    path = tmp_path / "log.jsonl"
    log = _log(path)
    log.add({"id": 1})
    log.add({"id": 2, "retry": True})
    assert sorted(log.done) == [1, 2]  # this run's outcome
    assert sorted(_log(path).done) == [1]


def test_progress_is_resumed_only_under_its_own_fingerprint(tmp_path):
    folder = resume_progress(tmp_path / ".out.progress", json.dumps({"seed": 0}))
    (folder / "log.jsonl").write_text('{"id": 1}\n')
    assert (resume_progress(folder, json.dumps({"seed": 0})) / "log.jsonl").exists()
    assert not (resume_progress(folder, json.dumps({"seed": 1})) / "log.jsonl").exists()
    assert (folder / "settings.json").read_text() == '{"seed": 1}'
    assert not list(folder.glob(".settings.json*"))  # written whole, by one rename
