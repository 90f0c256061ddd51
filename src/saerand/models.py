"""Loading subject models and tokenizers: one code path for hub ids and local revision directories."""

from __future__ import annotations

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
