"""What every workflow job does first: send output (tqdm included) to its log, set its threads."""

from __future__ import annotations

import torch

from .logs import log_to


def start_job(log_path: str, threads: int) -> None:
    log_to(log_path)
    torch.set_num_threads(max(1, threads))
