"""Loading the subject-model variants of the paper (Section 3), as saerand.variant_registry
describes each: a published checkpoint (trained, step0); re-sampled weights (rerandomized_incl_emb /
_excl_emb: every parameter IID Gaussian with that tensor's own mean and std, the embeddings kept in
_excl_emb); or Gaussian inputs (control: the trained model fed IID standard Gaussian vectors instead
of token embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .models import fetched_commit, load_causal_lm
from .study import revision_for
from .variant_registry import registered_variant

# Input embedding and unembedding (Pythia's `embed_out` is `lm_head` in transformers 5).
EMBEDDING_PARAMETERS = ("gpt_neox.embed_in.weight", "lm_head.weight")


@torch.no_grad()
def rerandomize(model: torch.nn.Module, *, keep_embeddings: bool, seed: int) -> dict[str, dict]:
    """Re-sample parameters in place; returns the (mean, std) used per tensor.

    std is the population std (unbiased=False) so one-element tensors work. Buffers such as the
    rotary inv_freq are not parameters and stay as they are.
    """
    names = dict(model.named_parameters())
    missing = [n for n in EMBEDDING_PARAMETERS if n not in names]
    if keep_embeddings and missing:
        raise KeyError(f"embedding parameters {missing} not found: is this a GPT-NeoX model?")
    generator = torch.Generator().manual_seed(seed)
    record = {}
    for name, param in names.items():
        if keep_embeddings and name in EMBEDDING_PARAMETERS:
            continue
        values = param.detach().float()
        mean, std = values.mean().item(), values.std(unbiased=False).item()
        sample = torch.randn(param.shape, generator=generator) * std + mean
        param.copy_(sample.to(param.dtype))
        record[name] = {"mean": mean, "std": std}
    return record


# Each activation store of the control variant gets its own noise stream, so no training shard
# repeats another's inputs and the held-out set is never training data.
NOISE_SPLITS = ("train", "eval", "autointerp")


def control_noise_seed(variant_seed: int, split: str, shard: int) -> int:
    """The control's noise seed for one store: SeedSequence((variant seed, split, shard))."""
    if split not in NOISE_SPLITS:
        raise ValueError(f"split must be one of {NOISE_SPLITS}, got {split!r}")
    entropy = (variant_seed, NOISE_SPLITS.index(split), shard)
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


@dataclass
class SubjectModel:
    """A model variant and how it is fed: token ids, or (control) Gaussian noise per position."""

    model: torch.nn.Module
    variant: str
    noise_seed: int | None = None
    _noise: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self):
        if registered_variant(self.variant).inputs == "gaussian_noise":
            self._noise = torch.Generator().manual_seed(self.noise_seed)

    @property
    def base(self) -> torch.nn.Module:
        return self.model.base_model

    def model_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._noise is None:
            return {"input_ids": input_ids}
        d_model = self.model.config.hidden_size
        noise = torch.randn(*input_ids.shape, d_model, generator=self._noise)
        param = next(self.model.parameters())
        return {"inputs_embeds": noise.to(device=param.device, dtype=param.dtype)}


def load_variant(
    location: str, model_settings: dict, variant: str, *, seed: int, device: str, split: str, shard: int = 0
) -> tuple[SubjectModel, dict]:
    """Build one variant to read `split` (shard `shard` of it); returns it with the record that goes
    into provenance. `seed` re-samples the weights (the same model for every split and shard)."""
    spec = registered_variant(variant)
    revision = revision_for(model_settings, variant)
    model = load_causal_lm(
        location, revision, n_layers=model_settings["n_layers"], dtype=model_settings["dtype"], device=device
    )
    record = {"variant": variant, "revision": revision, "seed": seed}
    commit = fetched_commit(location, revision)
    if commit:  # what a moving revision name (main) meant when this was made
        record["commit"] = commit
    if spec.resampling != "none":
        stats = rerandomize(model, keep_embeddings=spec.resampling == "excl_embeddings", seed=seed)
        record["resampled_parameters"] = len(stats)
    noise_seed = None
    if spec.inputs == "gaussian_noise":
        noise_seed = control_noise_seed(seed, split, shard)
        record["control_inputs"] = {
            "noise": "IID N(0, I) per position via inputs_embeds",
            "split": split,
            "shard": shard,
            "noise_seed": noise_seed,
            "derivation": "SeedSequence((variant_seed, split index in "
            f"{list(NOISE_SPLITS)}, shard)).generate_state(1, uint64)",
        }
    return SubjectModel(model, variant, noise_seed=noise_seed), record
