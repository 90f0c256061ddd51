"""The explainers, one entry each (as delphi's explainers/ lists its own): what each is, whether its
jobs need the served LLM, and the module that explains and scores an SAE's latents with it. The
config schema's enum (saerand.config), the rules (workflow/rules/autointerp.smk: a served
explainer's jobs run in the LLM server's job group, the others alone on a CPU), the figures and the
model card read this table.

Adding an explainer is a module in saerand.autointerp with

    async def explain_and_score(records, log, tokenizer, settings, server_file) -> None

(score each delphi record not yet in `log` and add its saerand.autointerp.scoring.latent_entry;
saerand.autointerp.scoring.score_latents does the bookkeeping) and its entry here.

It imports nothing heavy: the config validation and the Snakefile read it."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Explainer:
    name: str  # its folder beside each SAE (autointerp/<name>) and its columns' suffix (fuzz_auroc_<name>)
    description: str  # the model card's and the report's words for it
    figure_label: str  # its AUROC row's label in Figure 3
    module: str  # the saerand.autointerp module whose explain_and_score it runs
    # Its jobs talk to the vLLM server of autointerp.llm, in that server's job group (rule
    # autointerp_llm); otherwise each runs alone on a CPU (rule autointerp_cpu).
    serves_llm: bool

    def explain_and_score(self) -> Callable[..., Awaitable[None]]:
        return importlib.import_module(f"saerand.autointerp.{self.module}").explain_and_score


# In the figures' order.
EXPLAINERS: dict[str, Explainer] = {
    explainer.name: explainer
    for explainer in (
        Explainer("llm", "an LLM's explanations, as in the paper", "LLM", "llm", serves_llm=True),
        Explainer(
            "tokens",
            "a null explainer listing the most frequent activating tokens (no LLM)",
            "token null",
            "null_explainer",
            serves_llm=False,
        ),
    )
}
SERVED = tuple(name for name, explainer in EXPLAINERS.items() if explainer.serves_llm)
OFFLINE = tuple(name for name, explainer in EXPLAINERS.items() if not explainer.serves_llm)


def registered_explainer(name: str) -> Explainer:
    """The registered explainer `name`, or a KeyError that lists the registered ones."""
    try:
        return EXPLAINERS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not an explainer; registered: {', '.join(EXPLAINERS)}") from None
