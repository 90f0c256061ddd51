"""What a study consists of, stated once: its SAEs, the training shards, the chains they train in,
the SAEs auto-interpreted and the toy datasets. The rules' targets (workflow/rules/common.smk), the
cost model, the planner and the status command all read this one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import SaeTarget, main_hyperparameters, sae_targets, toy_datasets, train_shards


@dataclass(frozen=True)
class Study:
    targets: list[SaeTarget]  # every SAE, the Figure 11 sweep's included
    shards: list[tuple[int, int]]  # training token ranges, one cache job per (model, variant) each
    # Every (model, variant) that trains SAEs, in config order: one chain of shards each.
    chains: list[tuple[str, str]]
    # Every (model, variant, layer) whose SAEs train together: one job per shard each.
    training_layers: list[tuple[str, str, int]]
    # The SAEs auto-interpreted (Section 3.3): the study's own, one per (model, variant, layer), and
    # with autointerp.sweep the sweep's too.
    autointerp_targets: list[SaeTarget]
    toy_datasets: dict[str, dict[str, Any]]  # Section 4, by name

    @classmethod
    def of(cls, config: dict[str, Any]) -> Study:
        """The study of a validated config."""
        targets = list(sae_targets(config))
        main, autointerp = main_hyperparameters(config), config.get("autointerp")
        return cls(
            targets=targets,
            shards=train_shards(config),
            chains=list(dict.fromkeys((t.model, t.variant) for t in targets)),
            training_layers=list(dict.fromkeys((t.model, t.variant, t.layer) for t in targets)),
            autointerp_targets=(
                [t for t in targets if autointerp["sweep"] or t.hyperparameters == main] if autointerp else []
            ),
            toy_datasets=toy_datasets(config),
        )
