"""Loading subject models and tokenizers: one code path for hub ids and local revision directories."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .fetch.artefacts import HubArtefact, is_hub_id
from .fetch.offline import cached_snapshot

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _source(location: str, revision: str) -> str:
    """The directory of a model at a revision: a local model holds one subdirectory per revision,
    like Pythia's hub branches; a hub model's is its prefetched copy (saerand.fetch), so jobs never
    reach for the network."""
    if Path(location).is_dir():
        path = Path(location) / revision
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no revision {revision!r} under local model {location} ({path})")
        return str(path)
    if is_hub_id(location):
        return str(cached_snapshot(HubArtefact(location, revision)))
    raise FileNotFoundError(f"model {location!r} is neither a directory nor a hub id (owner/name)")


def fetched_commit(location: str, revision: str) -> str | None:
    """The hub commit a hub model's revision was read at (its fetched copy); None for local models."""
    return Path(_source(location, revision)).name if is_hub_id(location) else None


def load_tokenizer(location: str, revision: str):
    return AutoTokenizer.from_pretrained(_source(location, revision))


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """ "auto": bfloat16 on a GPU, as sparsify and the authors ran the subject models (float16
    risks overflow in re-randomized large models), float32 on a CPU (no fast bfloat16 there)."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return DTYPES[dtype]


def load_causal_lm(location: str, revision: str, *, n_layers: int, dtype: str = "float32", device: str = "cpu"):
    model = AutoModelForCausalLM.from_pretrained(_source(location, revision), dtype=resolve_dtype(dtype, device))
    found = model.config.num_hidden_layers
    if found != n_layers:
        raise ValueError(f"{location}@{revision} has {found} layers but the config says n_layers = {n_layers}")
    return model.to(device).eval().requires_grad_(False)


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
