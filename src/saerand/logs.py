"""A job's output, tqdm included, goes to its Snakemake log."""

from __future__ import annotations

import sys


def log_to(log_path: str) -> None:
    stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stdout = sys.stderr = stream
