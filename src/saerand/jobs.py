"""What every workflow job does first: send output (tqdm included) to its log, drop the hub token
(jobs read the hub offline), set its threads, and stop at once where an earlier attempt already timed out with all the time its partition allows."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from .logs import log_to

HUB_TOKENS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # where huggingface_hub reads a token from


class NoMoreTime(RuntimeError):
    """This job timed out at its partition's time limit and would start over: it cannot finish there."""


def start_job(log_path: str, threads: int, resources: Mapping[str, Any] | None = None) -> None:
    log_to(log_path)
    # Jobs read the hub offline (saerand.fetch): nothing a job runs, logs or records can leak the
    # token. (The fetch rules run in Snakemake's own process, which keeps it.)
    for name in HUB_TOKENS:
        os.environ.pop(name, None)
    # torch where the job has imported it; a job that imports it later (or not at all) takes the
    # count from the environment, so a job that needs no torch does not pay for importing it.
    os.environ["OMP_NUM_THREADS"] = str(max(1, threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, threads))
    exhausted = (resources or {}).get("time_exhausted", 0)
    if exhausted:
        raise NoMoreTime(
            f"an earlier attempt of this job timed out at {exhausted} min, all the time its partition allows "
            "(saerand.retries), and it starts over at every attempt, so it stops here instead of timing out again. "
            "Run it on a partition with a longer MaxTime (set SAERAND_SLURM_GPU_MAX_RUNTIME to it), on a faster "
            "GPU, or make it smaller in the config (tokens.buffer_tokens for a shard's jobs)."
        )
