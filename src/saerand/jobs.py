"""What every workflow job does first: send output (tqdm included) to its log, set its threads."""

from __future__ import annotations

import sys

import torch


def start_job(log_path: str, threads: int) -> None:
    stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stdout = sys.stderr = stream
    torch.set_num_threads(max(1, threads))
