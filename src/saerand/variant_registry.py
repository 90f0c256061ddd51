"""The subject-model variants (Section 3.1), one entry each: how the variant loads, whether its
weights are random, and how figures and tables name and colour it. Everything that treats variants
apart reads this table: the config schema's enum (saerand.config), the loader (saerand.variants),
the figures, the browser, the model card and the claims. A new variant is one entry here; one that
loads in a new way also needs its case in saerand.variants.

It imports nothing heavy: the Snakefile, the config validation and the planner read it."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

Revision = Literal["revision", "step0_revision"]
Resampling = Literal["none", "all", "excl_embeddings"]
Inputs = Literal["tokens", "gaussian_noise"]


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # the paper's legend name (Figure 3)
    colour: str  # a matplotlib colour
    revision: Revision  # which of the model's config revisions holds its weights
    resampling: Resampling  # its weights re-sampled after loading: none, all, all but the embeddings
    inputs: Inputs  # what it reads: token ids, or IID Gaussian vectors in place of the embeddings
    # No learned weights (the claims compare these against the trained model); the control's are learned.
    random_weights: bool

    def __post_init__(self):
        """A wrong entry stops the import, so the workflow never starts with it."""
        hints = typing.get_type_hints(Variant)
        for field in ("revision", "resampling", "inputs"):
            allowed = typing.get_args(hints[field])
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"variant {self.name!r}: {field} must be one of {allowed}, got {getattr(self, field)!r}"
                )
        if self.random_weights != (self.resampling != "none" or self.revision == "step0_revision"):
            raise ValueError(
                f"variant {self.name!r}: random_weights={self.random_weights} contradicts its weights "
                f"(revision {self.revision}, resampling {self.resampling})"
            )
        if not self.label or not self.colour:
            raise ValueError(f"variant {self.name!r}: label and colour must be set")


# In the figures' order: legends, rows and the browser's columns follow it.
VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant("trained", "Trained", "tab:gray", "revision", "none", "tokens", random_weights=False),
        Variant(
            "rerandomized_excl_emb", "Randomized excl emb", "tab:blue", "revision", "excl_embeddings", "tokens", True
        ),
        Variant("control", "Control", "black", "revision", "none", "gaussian_noise", random_weights=False),
        Variant("step0", "Step 0", "tab:green", "step0_revision", "none", "tokens", random_weights=True),
        Variant("rerandomized_incl_emb", "Randomized incl emb", "tab:orange", "revision", "all", "tokens", True),
    )
}
# The variants whose weights were learned: the claims' non-random side.
LEARNED = tuple(name for name, variant in VARIANTS.items() if not variant.random_weights)
# Those re-sampled from a trained model's weights (Section 3.1's re-randomizations).
RESAMPLED = tuple(name for name, variant in VARIANTS.items() if variant.resampling != "none")


def registered_variant(name: str) -> Variant:
    """The registered variant `name`, or a KeyError that lists the registered ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a variant; registered: {', '.join(VARIANTS)}") from None


def label(name: str) -> str:
    return registered_variant(name).label
