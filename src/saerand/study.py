"""What a study consists of, stated once: its SAEs, the training shards, the chains they train in,
the SAEs auto-interpreted, the token ranges each split reads and the toy datasets. The rules'
targets (workflow/rules/common.smk), the cost model, the planner and the status command all read
these, from a config saerand.config has validated."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .paths import autointerp_directory, embedded_model_dir, sae_directory
from .settings import Layers, ModelSettings, StudySettings, TokensSettings, study_settings
from .variant_registry import registered_variant


def selected_layers(model: ModelSettings, layers: Layers | None = None) -> list[int]:
    """The blocks of `model` that a selection names (the model's own by default): all of them,
    every n-th, or a list."""
    layers = model.layers if layers is None else layers
    if layers == "all":
        return list(range(model.n_layers))
    if isinstance(layers, dict):
        return list(range(0, model.n_layers, layers["every"]))
    return sorted(layers)


class SaeHyperparameters(NamedTuple):
    expansion_factor: int
    k: int

    @property
    def label(self) -> str:
        """The SAE's name among those trained on one layer: its directory name in results/."""
        return f"x{self.expansion_factor}-k{self.k}"

    @classmethod
    def from_label(cls, label: str) -> SaeHyperparameters:
        match = re.fullmatch(r"x(\d+)-k(\d+)", label)
        if not match:
            raise ValueError(f"{label!r} is not an SAE label like x64-k32")
        return cls(int(match[1]), int(match[2]))


class SaeTarget(NamedTuple):
    """One SAE of the study; its outputs live under `directory`."""

    model: str
    variant: str
    layer: int
    expansion_factor: int
    k: int

    @property
    def hyperparameters(self) -> SaeHyperparameters:
        return SaeHyperparameters(self.expansion_factor, self.k)

    @property
    def autointerp_module(self) -> str:
        """Its module in the delphi latent cache of its (model, variant): one per SAE."""
        return f"{self.hyperparameters.label}.layers.{self.layer}"

    @classmethod
    def from_wildcards(cls, wildcards: Mapping[str, str]) -> SaeTarget:
        """The SAE of a job whose paths hold model, variant, layer, expansion and k (paths.SAE_DIR)."""
        return cls(
            wildcards["model"],
            wildcards["variant"],
            int(wildcards["layer"]),
            int(wildcards["expansion"]),
            int(wildcards["k"]),
        )

    @property
    def directory(self) -> str:
        return sae_directory(self.model, self.variant, self.layer, self.expansion_factor, self.k)

    def autointerp_directory(self, explainer: str) -> str:
        return autointerp_directory(self.directory, explainer)


def main_hyperparameters(settings: StudySettings) -> SaeHyperparameters:
    return SaeHyperparameters(settings.sae.expansion_factor, settings.sae.k)


def point_settings(sae_settings: dict[str, Any], point: SaeHyperparameters) -> dict[str, Any]:
    """The study's SAE settings at one (expansion, k) point."""
    return {**sae_settings, "expansion_factor": point.expansion_factor, "k": point.k}


def sweep_layers(settings: StudySettings, model: str) -> list[int]:
    """Layers of `model` that the hyperparameter sweep covers (none if it is not swept)."""
    sweep = settings.sweep
    if not sweep or model not in sweep.models:
        return []
    return selected_layers(settings.models[model], sweep.layers)


def sae_hyperparameters(settings: StudySettings, model: str, layer: int | None = None) -> list[SaeHyperparameters]:
    """(expansion, k) points trained at `layer` (at any layer if None): the study's own where the
    model's layers include it, and the sweep grid (Figure 11) where the sweep covers it."""
    points = []
    if layer is None or layer in selected_layers(settings.models[model]):
        points.append(main_hyperparameters(settings))
    swept = sweep_layers(settings, model)
    if swept and (layer is None or layer in swept):
        points += [SaeHyperparameters(e, k) for e in settings.sweep.expansion_factors for k in settings.sweep.k]
    return list(dict.fromkeys(points))


def sae_targets(settings: StudySettings) -> Iterator[SaeTarget]:
    """Every SAE the study trains, one per (model, variant, layer, expansion, k)."""
    for name, model in settings.models.items():
        layers = sorted(set(selected_layers(model)) | set(sweep_layers(settings, name)))
        for variant in settings.variants:
            for layer in layers:
                for hyper in sae_hyperparameters(settings, name, layer):
                    yield SaeTarget(name, variant, layer, *hyper)


def train_shards(tokens: TokensSettings) -> list[tuple[int, int]]:
    """[start, stop) sequence ranges of the training shards, in training order."""
    per_shard = tokens.buffer_tokens // tokens.context_length
    total = tokens.train_tokens // tokens.context_length
    return [(start, min(start + per_shard, total)) for start in range(0, total, per_shard)]


def token_split(config: dict[str, Any], split: str) -> dict[str, Any]:
    """Where a split's sequences come from: the dataset, the range of its shuffled token stream
    (`skip_tokens`, `n_tokens`) and the shuffle seed. Without a `datasets.eval` the held-out
    sequences are the first `eval_tokens` of the training text's stream and training starts
    right after them, so the two are disjoint and drawn from the same mix of sources."""
    datasets, tokens = config["datasets"], config["tokens"]
    if split == "autointerp":
        # The training text's stream after everything evaluation and training take from it, cut at
        # the study's context length like them (so the ranges are exactly disjoint) and then into
        # auto-interp contexts (`window`): text no SAE was trained on.
        settings = config["autointerp"]
        return {
            "dataset": datasets["train"],
            "skip_tokens": tokens["train_tokens"] + (0 if "eval" in datasets else tokens["eval_tokens"]),
            "n_tokens": -(-settings["tokens"] // tokens["context_length"]) * tokens["context_length"],
            "shuffle_seed": datasets["shuffle_seed"],
            "window": settings["context_length"],
        }
    own = split in datasets
    return {
        "dataset": datasets[split] if own else datasets["train"],
        "skip_tokens": tokens["eval_tokens"] if split == "train" and "eval" not in datasets else 0,
        "n_tokens": tokens[f"{split}_tokens"],
        "shuffle_seed": datasets["shuffle_seed"],
        "window": None,
    }


def model_location(name: str, model: dict[str, Any]) -> str:
    """What `from_pretrained` is given: a hub id, or a local directory holding revisions."""
    if model.get("embedded"):
        return str(embedded_model_dir(name))
    return model.get("hub_id") or model["path"]


def revision_for(model: dict[str, Any], variant_name: str) -> str:
    """The model revision that holds a variant's weights."""
    return model[registered_variant(variant_name).revision]


def toy_datasets(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every dataset of the toy study (Section 4) by name, as saerand.toy.sweep takes it: where the
    data comes from, its seeds, and its latent counts (or multiples of its dimension)."""
    toy = config.get("toy") or {}
    datasets = {}
    if "superposition" in toy:
        spec = toy["superposition"]
        datasets["superposition"] = {
            "source": "superposition",
            "seeds": list(range(spec["seeds"])),
            "latents": spec["latents"],
            **{key: spec[key] for key in ("n_samples", "n_features", "n_dims", "expected_active", "decay")},
        }
    words = toy.get("word_vectors") or {"glove": {}, "embeddings": []}
    shared = {"seeds": [0], "latent_multiples": words.get("latent_multiples")}
    for name, path in words["glove"].items():
        datasets[name] = {
            "source": "glove",
            "path": path,
            "limit": words.get("limit"),  # optional: every row
            "config_key": f"toy.word_vectors.glove.{name}",
            **shared,
        }
    for model in words["embeddings"]:
        spec = config["models"][model]
        datasets[f"embeddings-{model}"] = {
            "source": "embeddings",
            "model": model,
            "location": model_location(model, spec),
            "revision": spec["revision"],
            "n_layers": spec["n_layers"],
            **shared,
        }
    return datasets


def glove_paths(config: dict[str, Any]) -> list[str]:
    """The GloVe files the toy study reads, as configured."""
    return [spec["path"] for spec in toy_datasets(config).values() if spec["source"] == "glove"]


def toy_latent_counts(spec: dict[str, Any], n_dims: int) -> list[int]:
    """A toy dataset's own latent counts, or multiples of its dimension (word vectors)."""
    return list(spec.get("latents") or [multiple * n_dims for multiple in spec["latent_multiples"]])


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
        """The study of a validated config. (Its toy datasets, Snakemake params, are built from the
        config's own dicts: a param must equal what a finished study recorded, or its jobs rerun.)"""
        settings = study_settings(config)
        targets = list(sae_targets(settings))
        main, autointerp = main_hyperparameters(settings), settings.autointerp
        return cls(
            targets=targets,
            shards=train_shards(settings.tokens),
            chains=list(dict.fromkeys((t.model, t.variant) for t in targets)),
            training_layers=list(dict.fromkeys((t.model, t.variant, t.layer) for t in targets)),
            autointerp_targets=(
                [t for t in targets if autointerp.sweep or t.hyperparameters == main] if autointerp else []
            ),
            toy_datasets=toy_datasets(config),
        )
