"""Publish files and directories all at once: a job killed mid-write leaves nothing that looks done.

An output is written in a staging folder beside it, `.{name}.partial-{pid}-{random}`, that holds
the writer's owner record (host, pid, Slurm job id) and the content under the output's own name.
The content is fsynced, renamed into place and the parent directory fsynced, so a crash cannot
publish a hollow store. A writer removes the staging of writers that are gone; one whose owner may
still be running (a rerun beside an orphan job) stops it with the owner named.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OWNER_RECORD = "owner.json"
# Staging of saerand before owner records: named by pid alone, each writer removed the others'.
_UNRECORDED_STAGING = re.compile(r"\.partial-\d+$")
# squeue's states of a job that runs no more (it lists them for a few minutes after the end).
_SLURM_ENDED = set("BOOT_FAIL CANCELLED COMPLETED DEADLINE FAILED NODE_FAIL OUT_OF_MEMORY PREEMPTED TIMEOUT".split())


class LiveWriterError(RuntimeError):
    """Another job, running or not known to be dead, is writing the same output."""


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a staging directory; on success it replaces `path` by one rename, on error it is removed."""
    path = Path(path)
    with _staging_folder(path) as folder:
        staging = folder / path.name
        staging.mkdir()
        yield staging
        _fsync_tree(staging)
        if path.exists():
            shutil.rmtree(path)
        os.rename(staging, path)
        _fsync(path.parent)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a staging file path; on success it replaces `path` by one rename, on error it is removed."""
    path = Path(path)
    with _staging_folder(path) as folder:
        staging = folder / path.name
        yield staging
        _fsync(staging)
        os.replace(staging, path)
        _fsync(path.parent)


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as staging:
        staging.write_text(text)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def _staging_folder(path: Path) -> Iterator[Path]:
    """This process's staging folder for `path`, with its owner record; removed on leaving."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_staging_of_dead_writers(path)
    folder = path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    folder.mkdir()
    try:
        (folder / OWNER_RECORD).write_text(json.dumps(_this_owner()))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _this_owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def _remove_staging_of_dead_writers(path: Path) -> None:
    for staging in sorted(path.parent.glob(f".{path.name}.partial-*")):
        owner = _owner_of(staging)
        if not _owner_is_gone(staging, owner):
            raise LiveWriterError(_live_writer_message(path, staging, owner))
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)


def _owner_of(staging: Path) -> dict[str, Any] | None:
    try:
        return json.loads((staging / OWNER_RECORD).read_text())
    except (OSError, ValueError):
        return None  # no record: an older saerand's staging, or one being created this instant


def _owner_is_gone(staging: Path, owner: dict[str, Any] | None) -> bool:
    if owner is None:
        # Gone already (its writer has just published), or an older saerand's.
        return not staging.exists() or bool(_UNRECORDED_STAGING.search(staging.name))
    if owner["host"] == socket.gethostname():
        # Our own pid: a dead process's that the system gave to us (we start our staging only now).
        if owner["pid"] == os.getpid() or not _process_is_alive(owner["pid"]):
            return True
    return owner.get("slurm_job_id") is not None and _slurm_job_has_ended(owner["slurm_job_id"])


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _slurm_job_has_ended(job_id: str) -> bool:
    """True only when squeue says so: without squeue, or when it fails, the job may still run."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return False
    try:
        listed = subprocess.run([squeue, "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if listed.returncode != 0:
        return "Invalid job id" in listed.stderr  # long finished: the controller has forgotten it
    return set(listed.stdout.split()) <= _SLURM_ENDED


def _live_writer_message(path: Path, staging: Path, owner: dict[str, Any] | None) -> str:
    if owner is None:
        return (
            f"{path} is being written by an unknown job: its staging {staging} has no owner record. "
            f"If no job writes {path}, remove {staging} and run again."
        )
    job = owner.get("slurm_job_id")
    writer = f"pid {owner['pid']} on host {owner['host']}" + (f", Slurm job {job}" if job else "")
    stop = f"stop it (scancel {job})" if job else f"stop it (kill {owner['pid']} on {owner['host']})"
    return (
        f"{path} is being written by another job, {writer}, which may still be running (its staging: "
        f"{staging}). Wait for it to finish or {stop}; if it is known to be dead, remove {staging} and run again."
    )


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(root: Path) -> None:
    """Every file and directory under `root`, deepest first, on disk before it is published."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync(Path(directory, name))
        _fsync(Path(directory))
