"""Text for the Snakemake report's captions (workflow/report/*.rst) made from the config."""

from __future__ import annotations

from .autointerp.explainers import EXPLAINERS
from .settings import StudySettings

PAPER_EXPANSION, PAPER_K, PAPER_LATENTS = 64, 32, 100


def deviations(settings: StudySettings) -> str:
    """reStructuredText: where this study differs from the paper's."""
    notes = []
    embedded = [name for name, model in settings.models.items() if model.embedded]
    if embedded:
        notes.append(
            f"subject model {', '.join(embedded)} is the workflow's embedded tiny GPT-NeoX, trained on its own "
            "corpus (the paper: Pythia 70M to 6.9B on RedPajama)"
        )
    sae = settings.sae
    if (sae.expansion_factor, sae.k) != (PAPER_EXPANSION, PAPER_K):
        notes.append(f"SAE expansion {sae.expansion_factor}, k = {sae.k} (the paper: {PAPER_EXPANSION}, {PAPER_K})")
    autointerp = settings.autointerp
    if autointerp:
        if autointerp.latents != PAPER_LATENTS:
            notes.append(f"{autointerp.latents} latents interpreted per SAE (the paper: {PAPER_LATENTS})")
        if not any(EXPLAINERS[name].serves_llm for name in autointerp.explainers):
            used = "; ".join(f"``{name}``: {EXPLAINERS[name].description}" for name in autointerp.explainers)
            notes.append(f"explanations without an LLM ({used}); the paper's explainer is Llama-3.1-70B")
    tokens = settings.tokens
    notes.append(f"{tokens.train_tokens:,} training and {tokens.eval_tokens:,} held-out tokens per SAE")
    return "**Differences from the paper:** " + "; ".join(notes) + "."
