"""Publishing outputs (saerand.atomic): on disk before the rename, and never beside a live writer.

A rerun beside an orphan job (its Snakemake gone, the job still running) must not delete the
orphan's staging; a writer that is gone, on this host or in Slurm's queue, leaves staging to clean.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from saerand.atomic import OWNER_RECORD, LiveWriterError, atomic_directory, atomic_file, write_text


def _staging(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.partial-*"))


@pytest.fixture()
def disk_events(monkeypatch) -> list[tuple[str, str]]:
    """Every fsync (of the path its descriptor names) and rename, in order."""
    events = []
    fsync, rename, replace = os.fsync, os.rename, os.replace

    def record_fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def record_rename(move):
        def moved(source, destination):
            events.append(("rename", str(destination)))
            move(source, destination)

        return moved

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "rename", record_rename(rename))
    monkeypatch.setattr(os, "replace", record_rename(replace))
    return events


def _in_tree(path: str | Path, root: str) -> Path:
    """`path` from its tree's root directory, named `root` (staged or published)."""
    parts = Path(path).parts
    return Path(*parts[parts.index(root) :])


def test_a_directory_is_on_disk_before_its_rename_and_the_rename_after_it(tmp_path, disk_events):
    store = tmp_path / "out" / "store.zarr"
    with atomic_directory(store) as staging:
        (staging / "layers.0" / "c").mkdir(parents=True)
        (staging / "layers.0" / "c" / "0").write_bytes(b"chunk")
        (staging / "zarr.json").write_text("{}")
    renamed = disk_events.index(("rename", str(store)))
    synced_before = {_in_tree(path, store.name) for event, path in disk_events[:renamed] if event == "fsync"}
    assert synced_before == {_in_tree(p, store.name) for p in [store, *store.rglob("*")]}  # all of the tree
    assert disk_events[renamed + 1 :] == [("fsync", str(store.parent))]


def test_a_file_is_on_disk_before_its_rename_and_the_rename_after_it(tmp_path, disk_events):
    path = tmp_path / "metrics.json"
    write_text(path, "{}")
    assert [event for event, _ in disk_events] == ["fsync", "rename", "fsync"]
    assert disk_events[0][1].endswith("/metrics.json") and disk_events[0][1] != str(path)
    assert disk_events[1:] == [("rename", str(path)), ("fsync", str(tmp_path))]


def test_staging_carries_its_owner_and_the_output_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    for publish in (atomic_directory, atomic_file):
        path = tmp_path / publish.__name__
        with publish(path) as staging:
            (folder,) = _staging(path)
            owner = json.loads((folder / OWNER_RECORD).read_text())
            assert owner == {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": "777"}
            if publish is atomic_directory:
                (staging / "data").write_text("x")
            else:
                staging.write_text("x")
        assert _staging(path) == []
    assert sorted(p.name for p in (tmp_path / "atomic_directory").iterdir()) == ["data"]


_ORPHAN = """
import sys, time
from saerand.atomic import atomic_directory
with atomic_directory(sys.argv[1]) as staging:
    (staging / "half").write_text("written")
    print("writing", flush=True)
    time.sleep(600)  # the test kills us here, mid-write
"""


def test_a_second_writer_stops_beside_a_live_one_and_cleans_up_after_a_dead_one(tmp_path):
    path = tmp_path / "latents"
    orphan = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert orphan.stdout.readline().strip() == "writing"
        (live,) = _staging(path)
        with pytest.raises(LiveWriterError) as refused:
            with atomic_directory(path):
                pass
        message = str(refused.value)
        assert f"pid {orphan.pid} on host {socket.gethostname()}" in message
        assert f"kill {orphan.pid}" in message and f"remove {live}" in message
        assert (live / "latents" / "half").read_text() == "written"  # the live writer's work is kept
    finally:
        orphan.send_signal(signal.SIGKILL)
        orphan.wait(timeout=60)
    with atomic_directory(path) as staging:
        (staging / "whole").write_text("done")
    assert _staging(path) == [] and [p.name for p in path.iterdir()] == ["whole"]


def _foreign_staging(path: Path, slurm_job_id: str | None) -> Path:
    """Staging left by a writer on another host, in Slurm job `slurm_job_id`."""
    folder = path.with_name(f".{path.name}.partial-4242-0123abcd")
    folder.mkdir()
    (folder / OWNER_RECORD).write_text(
        json.dumps({"host": "node-elsewhere", "pid": 4242, "slurm_job_id": slurm_job_id})
    )
    return folder


def _fake_squeue(tmp_path: Path, monkeypatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize(
    ("squeue", "gone"),
    [
        ('test "$3" = 4242 && echo RUNNING', False),
        ("echo PENDING", False),
        ("echo COMPLETED", True),  # listed for a few minutes after its end
        ("true", True),
        ("echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", True),
        ("echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1", False),
    ],
)
def test_a_writer_elsewhere_is_gone_only_when_squeue_says_so(tmp_path, monkeypatch, squeue, gone):
    _fake_squeue(tmp_path, monkeypatch, squeue)
    path = tmp_path / "metrics.json"
    foreign = _foreign_staging(path, "4242")
    if gone:
        write_text(path, "{}")
        assert not foreign.exists() and path.read_text() == "{}"
        return
    with pytest.raises(LiveWriterError, match=r"pid 4242 on host node-elsewhere, Slurm job 4242.*scancel 4242"):
        write_text(path, "{}")
    assert foreign.exists() and not path.exists()


@pytest.mark.parametrize("slurm_job_id", ["4242", None])
def test_a_writer_elsewhere_whose_liveness_is_unknown_is_left_alone(tmp_path, monkeypatch, slurm_job_id):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue
    path = tmp_path / "store.zarr"
    foreign = _foreign_staging(path, slurm_job_id)
    with pytest.raises(LiveWriterError, match=f"remove {foreign}"):
        with atomic_directory(path):
            pass
    assert (foreign / OWNER_RECORD).exists() and not path.exists()


def test_staging_without_a_record_is_kept_unless_an_older_saerand_left_it(tmp_path):
    path = tmp_path / "sae"
    older = path.with_name(f".{path.name}.partial-999999")  # named by pid alone, before owner records
    older.mkdir()
    with atomic_directory(path):
        pass
    assert not older.exists() and path.is_dir()
    unrecorded = path.with_name(f".{path.name}.partial-1-0123abcd")  # being created, or killed at once
    unrecorded.mkdir()
    with pytest.raises(LiveWriterError, match="has no owner record"):
        with atomic_directory(path):
            pass
    assert unrecorded.exists()
