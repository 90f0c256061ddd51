"""Which device a job runs on. (Apart from saerand.models: jobs that load no subject model, such as
the toy sweeps, need no transformers.)"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

# Set in a Slurm job or step that was given GPUs.
SLURM_GPU_VARIABLES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE")


class GpuNotVisible(RuntimeError):
    """A job meant for a GPU that sees none: on the CPU it would run until its time limit."""


def resolve_device(device: str, environ: Mapping[str, str] = os.environ) -> str:
    """The device a job runs on: `auto` takes a GPU when there is one. A job Slurm gave GPUs to, or
    one configured for `cuda`, stops at once when CUDA sees no GPU (a driver or CUDA_VISIBLE_DEVICES
    problem), instead of running on the CPU past its time limit; `cpu` runs on the CPU knowingly."""
    if device == "cpu":
        return device
    if torch.cuda.is_available():
        return "cuda" if device == "auto" else device
    allocated = {name: environ[name] for name in SLURM_GPU_VARIABLES if environ.get(name, "0") not in ("", "0")}
    if device != "auto" or allocated:
        given = ", ".join(f"{name}={value}" for name, value in allocated.items()) or f"device {device!r} configured"
        raise GpuNotVisible(
            f"this job should run on a GPU ({given}) but CUDA sees none (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}, CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r}): check the "
            "node's driver and the job's GPU request, or set the config's device to cpu to run it on the CPU"
        )
    return "cpu"
