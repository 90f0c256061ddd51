"""The token-identity null explainer (explainer `tokens`): no LLM. Its "explanation" is the total
activation of the latent per token in the explanation examples, and a sample's probability is how
strongly its tokens (detection), or its highlighted tokens (fuzzing), carry that weight. It
measures how much of an AUROC token identity alone explains, a control the paper lacks."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import AutointerpSettings
from .delphi_compat import import_delphi
from .scoring import SCORERS, LatentLog, latent_entry, samples, score_latents, token_activation

import_delphi()
from delphi.scorers.classifier.sample import L, R  # noqa: E402


def highlighted(text: str, str_tokens: list[str]) -> list[int] | None:
    """Indices of the tokens delphi marked <<like this>> in `text` (None if the text is not the
    tokens with marks)."""
    marked, position, inside = [], 0, False
    for index, token in enumerate(str_tokens):
        for mark, opens in ((L, True), (R, False)):
            if text.startswith(mark, position) and inside != opens:
                inside, position = opens, position + len(mark)
        if not text.startswith(token, position):
            return None
        if inside:
            marked.append(index)
        position += len(token)
    return marked


class NullExplainer:
    """Token identity as the explanation: weights per token string from the explanation examples."""

    def __init__(self, record, tokenizer):
        by_id = token_activation(record.train)
        self.weights: dict[str, float] = defaultdict(float)
        for token, value in by_id.items():
            self.weights[tokenizer.decode([token])] += value
        self.top = max(self.weights.values(), default=0.0)

    def explanation(self, n: int = 10) -> str:
        ranked = sorted(self.weights.items(), key=lambda item: -item[1])[:n]
        return "tokens: " + ", ".join(f"{token!r} {value / self.top:.2f}" for token, value in ranked)

    def weight(self, token: str) -> float:
        return self.weights.get(token, 0.0) / self.top if self.top else 0.0

    def probability(self, sample, scorer: str) -> float | None:
        tokens = sample.data.str_tokens
        if scorer == "detection":
            return max((self.weight(token) for token in tokens), default=0.0)
        marked = highlighted(sample.text, tokens)
        if marked is None:
            return None
        return float(np.mean([self.weight(tokens[i]) for i in marked])) if marked else 0.0


def score_with_null(record, tokenizer, settings: AutointerpSettings) -> dict[str, Any]:
    """One latent, explained and scored by the null explainer."""
    explainer = NullExplainer(record, tokenizer)
    rows = {
        scorer: [
            (sample.data.activating, explainer.probability(sample, scorer), sample.data.distance)
            for sample in samples(record, scorer, settings)
        ]
        for scorer in SCORERS
    }
    return latent_entry(record, explainer.explanation(), rows)


async def explain_and_score(
    records: list, log: LatentLog, tokenizer, settings: AutointerpSettings, server_file: str | Path | None = None
) -> None:
    """Every record not yet in `log`, one at a time (a CPU job's one thread)."""

    async def null(record):
        return score_with_null(record, tokenizer, settings)

    await score_latents(records, null, log, concurrency=1)
