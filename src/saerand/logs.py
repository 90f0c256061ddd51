"""A job's output, tqdm included, goes to its Snakemake log, which one job writes at a time."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys


class LogInUse(RuntimeError):
    """Another live process writes this job's log: the same job runs twice (an orphan of a killed run)."""


def log_to(log_path: str) -> None:
    """Send this process's output to `log_path`, locked for as long as the job runs: a rerun beside a
    still-running orphan of the same job stops before it truncates the orphan's log."""
    stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        stream.close()
        raise LogInUse(
            f"{log_path} is being written by another live process: this job is already running elsewhere "
            f"(an orphan of an earlier run?). This one (host {socket.gethostname()}, pid {os.getpid()}, Slurm job "
            f"{os.environ.get('SLURM_JOB_ID', 'none')}) stops. Wait for it, or find and cancel it "
            "(squeue --me, scancel) and run again."
        ) from None
    except OSError as error:  # a filesystem without locks: write unguarded, as before
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    stream.truncate(0)
    sys.stdout = sys.stderr = stream
