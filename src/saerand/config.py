"""Validated study configuration: the JSON schema first, then the rules a schema cannot say."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import yaml

VARIANTS = (
    "trained",
    "rerandomized_incl_emb",
    "rerandomized_excl_emb",
    "step0",
    "control",
)
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
EMBEDDED_MODELS_DIR = Path("resources/models")
CURVE_FILE = "training_curve.csv"  # each SAE's training curve, beside it (saerand.sae_training)
CORPUS_DIR = Path("resources/corpus")

# Hub datasets whose repository holds a loading script, which datasets >= 4 refuses, and what
# loads the same data without it.
SCRIPT_DATASETS = {
    "togethercomputer/RedPajama-Data-1T-Sample": "path: json, data_files: hf://datasets/togethercomputer/RedPajama-Data-1T-Sample/*.jsonl, split: train",
    "togethercomputer/RedPajama-Data-1T": "path: json, data_files: hf://datasets/togethercomputer/RedPajama-Data-1T/<subset>/*.jsonl, split: train",
}


class ConfigError(ValueError):
    """A configuration that would make the workflow fail or compute the wrong thing."""


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _with_defaults(validator_class):
    """A validator that fills schema `default`s into the instance as it validates it."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _schema_checked(instance: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `instance` with the schema's defaults filled in, or ConfigError naming the key."""
    instance = copy.deepcopy(instance)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        where = _key_path(error.absolute_path)
        hint = error.schema.get("description") if isinstance(error.schema, dict) else None
        message = f"config key '{where}': {error.message}"
        if hint:
            message += f" (expected: {hint})"
        raise ConfigError(message)
    return instance


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Return a copy of `config` with defaults filled in, or raise ConfigError naming the key."""
    config = _schema_checked(config, yaml.safe_load(Path(schema_path).read_text()))
    _check_cross_fields(config)
    return config


def validate_section(section: str, values: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """One config section alone, validated and with its defaults filled in: for code that runs
    outside a study (benchmarks, tests)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    schema = {**schema, "properties": {section: schema["properties"][section]}, "required": [section]}
    return _schema_checked({section: values}, schema)[section]


def _check_cross_fields(config: dict[str, Any]) -> None:
    tokens = config["tokens"]
    for key in ("train_tokens", "eval_tokens"):
        if tokens[key] < tokens["context_length"]:
            raise ConfigError(
                f"config key 'tokens.{key}': {tokens[key]} is less than one sequence "
                f"(tokens.context_length = {tokens['context_length']})"
            )
    step_tokens = config["sae"]["batch_size"] * tokens["context_length"]
    if tokens["buffer_tokens"] % step_tokens:
        raise ConfigError(
            f"config key 'tokens.buffer_tokens': {tokens['buffer_tokens']} is not a multiple of "
            f"sae.batch_size x tokens.context_length = {step_tokens}, so a batch would straddle two shards"
        )
    _check_datasets(config)
    _check_toy(config)
    _check_autointerp(config)
    _check_no_secrets(config)
    embedded = config.get("embedded_model")
    sweep = config.get("sweep")
    for name in sweep["models"] if sweep else []:
        if name not in config["models"]:
            raise ConfigError(
                f"config key 'sweep.models': '{name}' is not one of the models ({', '.join(config['models'])})"
            )
    for name, model in config["models"].items():
        _check_layers_inside(f"models.{name}.layers", model)
        if name in (sweep["models"] if sweep else []) and "layers" in sweep:
            _check_layers_inside("sweep.layers", {**model, "layers": sweep["layers"]})
        if "d_model" in model:
            for hyper in sae_hyperparameters(config, name):
                if hyper.k > hyper.expansion_factor * model["d_model"]:
                    key = "sae.k" if hyper == main_hyperparameters(config) else "sweep.k"
                    raise ConfigError(
                        f"config key '{key}': k = {hyper.k} exceeds the "
                        f"{hyper.expansion_factor * model['d_model']} latents of {name}'s SAE at "
                        f"expansion {hyper.expansion_factor}"
                    )
        if model.get("embedded"):
            if embedded is None or embedded["name"] != name:
                raise ConfigError(
                    f"config key 'models.{name}.embedded': no embedded_model section named '{name}' builds this model"
                )
            arch = embedded["architecture"]
            if model["n_layers"] != arch["num_hidden_layers"]:
                raise ConfigError(
                    f"config key 'models.{name}.n_layers': {model['n_layers']} differs from "
                    f"embedded_model.architecture.num_hidden_layers = {arch['num_hidden_layers']}"
                )
            if tokens["context_length"] > arch["context_length"]:
                raise ConfigError(
                    f"config key 'tokens.context_length': {tokens['context_length']} exceeds "
                    f"the embedded model's context ({arch['context_length']})"
                )


def _check_datasets(config: dict[str, Any]) -> None:
    """A dataset that is a loading script fails in datasets 5 only inside a cluster job: stop here."""
    for split, spec in config["datasets"].items():
        if not isinstance(spec, dict):
            continue
        path = spec["path"]
        instead = SCRIPT_DATASETS.get(path.rstrip("/"))
        local = Path(path)
        if instead is None and (local.suffix == ".py" or (local / f"{local.name}.py").is_file()):
            instead = "path: json (or csv, parquet, text), data_files: <the script's data files>"
        if instead is not None:
            raise ConfigError(
                f"config key 'datasets.{split}.path': {path!r} is a dataset loading script, which "
                f"datasets no longer runs; write instead: {{{instead}}}"
            )
    tokens = config["tokens"]
    if "eval" not in config["datasets"] and tokens["eval_tokens"] % tokens["context_length"]:
        raise ConfigError(
            f"config key 'tokens.eval_tokens': {tokens['eval_tokens']} is not a multiple of "
            f"tokens.context_length = {tokens['context_length']}; the held-out sequences come from the "
            "training text's stream, so a partial sequence would be lost between them"
        )


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


def _check_autointerp(config: dict[str, Any]) -> None:
    settings, context = config.get("autointerp"), config["tokens"]["context_length"]
    if not settings:
        return
    if context % settings["context_length"]:
        raise ConfigError(
            f"config key 'autointerp.context_length': {settings['context_length']} does not divide "
            f"tokens.context_length = {context}; auto-interp contexts are cut from the study's sequences"
        )
    if settings["context_length"] % settings["example_context"]:
        raise ConfigError(
            f"config key 'autointerp.example_context': {settings['example_context']} does not divide "
            f"autointerp.context_length = {settings['context_length']} (delphi cuts contexts into examples)"
        )
    if settings["draw"] < settings["latents"]:
        raise ConfigError(
            f"config key 'autointerp.draw': {settings['draw']} is fewer than autointerp.latents = {settings['latents']}"
        )
    per_prompt, per_latent = (
        settings["llm"]["examples_per_prompt"],
        settings["test_examples"] + settings["non_activating"],
    )
    if "llm" in settings["explainers"] and per_latent % per_prompt:
        # delphi asks for exactly examples_per_prompt answers per prompt: a shorter last prompt never parses.
        raise ConfigError(
            f"config key 'autointerp.llm.examples_per_prompt': {per_prompt} does not divide the "
            f"{per_latent} samples per latent and scorer (autointerp.test_examples + non_activating)"
        )


# A name ending in one of these words looks like a secret's (HF_TOKEN, --api-key, APIKEY); names
# that merely contain one (TOKENIZERS_PARALLELISM, --max-num-batched-tokens) do not.
SECRET_NAME = re.compile(r"(token|key|secret|password)(?![a-z0-9])", re.IGNORECASE)
# A server argument that names something: a flag (--hf-token, --api-key=...) or NAME=value.
NAMED_ARGUMENT = re.compile(r"^(-+[^=]+|[A-Za-z_][A-Za-z0-9_]*(?==))")


def _check_no_secrets(config: dict[str, Any]) -> None:
    """A config is copied into Snakemake's metadata, job scripts, logs and provenance: no secret
    may be in the LLM server's environment or flags."""
    settings = config.get("autointerp")
    if not settings:
        return
    llm = settings["llm"]
    named = [(f"environment.{name}", name) for name in llm["environment"]]
    for index, argument in enumerate(llm["server_args"]):
        match = NAMED_ARGUMENT.match(argument) if isinstance(argument, str) else None
        if match:
            named.append((f"server_args[{index}]", match[1]))
    for key, name in named:
        if SECRET_NAME.search(name):
            raise ConfigError(
                f"config key 'autointerp.llm.{key}': {name!r} looks like a secret, and a config is copied "
                "into Snakemake's metadata, logs and results; put secrets in the job's environment instead "
                "(e.g. export HF_TOKEN before running snakemake)"
            )


def _check_toy(config: dict[str, Any]) -> None:
    toy = config.get("toy")
    if not toy:
        return
    coefficients = toy["sae"]["l1_coefficients"]
    if coefficients["low"] > coefficients["high"]:
        raise ConfigError(
            f"config key 'toy.sae.l1_coefficients': low = {coefficients['low']} exceeds high = {coefficients['high']}"
        )
    data = toy.get("superposition")
    if data and data["n_dims"] > data["n_features"]:
        raise ConfigError(
            f"config key 'toy.superposition.n_dims': n_d = {data['n_dims']} exceeds n_s = "
            f"n_features = {data['n_features']}; superposed data needs n_s >= n_d"
        )
    if data and data["expected_active"] > data["n_features"]:
        raise ConfigError(
            f"config key 'toy.superposition.expected_active': {data['expected_active']} "
            f"exceeds n_features = {data['n_features']}"
        )
    words = toy.get("word_vectors")
    for name in words["embeddings"] if words else []:
        if name not in config["models"]:
            raise ConfigError(
                f"config key 'toy.word_vectors.embeddings': '{name}' is not one of the models "
                f"({', '.join(config['models'])})"
            )


def _check_layers_inside(key: str, model: dict[str, Any]) -> None:
    for layer in selected_layers(model):
        if layer >= model["n_layers"]:
            raise ConfigError(
                f"config key '{key}': layer {layer} is outside the model, "
                f"which has n_layers = {model['n_layers']} (valid: 0..{model['n_layers'] - 1})"
            )


def load_config(path: str | Path, schema_path: str | Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    return validate_config(raw or {}, schema_path)


def selected_layers(model: dict[str, Any]) -> list[int]:
    layers = model["layers"]
    if layers == "all":
        return list(range(model["n_layers"]))
    if isinstance(layers, dict):
        return list(range(0, model["n_layers"], layers["every"]))
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

    @property
    def directory(self) -> str:
        return sae_directory(self.model, self.variant, self.layer, self.expansion_factor, self.k)


def point_settings(sae_settings: dict[str, Any], point: SaeHyperparameters) -> dict[str, Any]:
    """The study's SAE settings at one (expansion, k) point."""
    return {**sae_settings, "expansion_factor": point.expansion_factor, "k": point.k}


def sae_directory(model: str, variant: str, layer: int | str, expansion_factor: int | str, k: int | str) -> str:
    """Output paths carry the SAE's hyperparameters, so sweep points never collide."""
    return f"results/{model}/{variant}/{SaeHyperparameters(expansion_factor, k).label}/layers.{layer}"


def layer_checkpoint_directory(model: str, variant: str, layer: int | str, shard: int | str) -> str:
    """Training state of every SAE trained on a layer after a shard: one subdirectory per SAE,
    named by its label, so each SAE keeps its own checkpoint chain."""
    return f"results/{model}/{variant}/layers.{layer}/checkpoints/shard-{shard}"


def main_hyperparameters(config: dict[str, Any]) -> SaeHyperparameters:
    return SaeHyperparameters(config["sae"]["expansion_factor"], config["sae"]["k"])


def sweep_layers(config: dict[str, Any], model: str) -> list[int]:
    """Layers of `model` that the hyperparameter sweep covers (none if it is not swept)."""
    sweep, spec = config.get("sweep"), config["models"][model]
    if not sweep or model not in sweep["models"]:
        return []
    return selected_layers({**spec, "layers": sweep.get("layers", spec["layers"])})


def sae_hyperparameters(config: dict[str, Any], model: str, layer: int | None = None) -> list[SaeHyperparameters]:
    """(expansion, k) points trained at `layer` (at any layer if None): the study's own where the
    model's layers include it, and the sweep grid (Figure 11) where the sweep covers it."""
    points = []
    if layer is None or layer in selected_layers(config["models"][model]):
        points.append(main_hyperparameters(config))
    if sweep_layers(config, model) and (layer is None or layer in sweep_layers(config, model)):
        sweep = config["sweep"]
        points += [SaeHyperparameters(e, k) for e in sweep["expansion_factors"] for k in sweep["k"]]
    return list(dict.fromkeys(points))


def sae_targets(config: dict[str, Any]) -> Iterator[SaeTarget]:
    """Every SAE the study trains, one per (model, variant, layer, expansion, k)."""
    for name, model in config["models"].items():
        layers = sorted(set(selected_layers(model)) | set(sweep_layers(config, name)))
        for variant in config["variants"]:
            for layer in layers:
                for hyper in sae_hyperparameters(config, name, layer):
                    yield SaeTarget(name, variant, layer, *hyper)


def train_shards(config: dict[str, Any]) -> list[tuple[int, int]]:
    """[start, stop) sequence ranges of the training shards, in training order."""
    tokens = config["tokens"]
    per_shard = tokens["buffer_tokens"] // tokens["context_length"]
    total = tokens["train_tokens"] // tokens["context_length"]
    return [(start, min(start + per_shard, total)) for start in range(0, total, per_shard)]


def embedded_model_dir(name: str) -> Path:
    return EMBEDDED_MODELS_DIR / name


def model_location(name: str, model: dict[str, Any]) -> str:
    """What `from_pretrained` is given: a hub id, or a local directory holding revisions."""
    if model.get("embedded"):
        return str(embedded_model_dir(name))
    return model.get("hub_id") or model["path"]


def revision_for(model: dict[str, Any], variant: str) -> str:
    return model["step0_revision"] if variant == "step0" else model["revision"]


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
