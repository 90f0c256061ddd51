"""Validated study configuration: the JSON schema first, then the rules a schema cannot say."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .autointerp.explainers import EXPLAINERS, SERVED
from .variant_registry import VARIANTS

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

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


def load_schema(schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """The config schema, its variants' and explainers' names taken from their registries
    (saerand.variant_registry, saerand.autointerp.explainers)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    schema["$defs"]["variant"]["enum"] = list(VARIANTS)
    schema["properties"]["autointerp"]["properties"]["explainers"]["items"]["enum"] = list(EXPLAINERS)
    return schema


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Return a copy of `config` with defaults filled in, or raise ConfigError naming the key."""
    config = _schema_checked(config, load_schema(schema_path))
    _check_cross_fields(config)
    return config


def validate_section(section: str, values: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """One config section alone, validated and with its defaults filled in: for code that runs
    outside a study (benchmarks, tests)."""
    schema = load_schema(schema_path)
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
    swept_models = sweep["models"] if sweep else []
    for name in swept_models:
        if name not in config["models"]:
            raise ConfigError(
                f"config key 'sweep.models': '{name}' is not one of the models ({', '.join(config['models'])})"
            )
    for name, model in config["models"].items():
        _check_layers_inside(f"models.{name}.layers", model)
        if name in swept_models and "layers" in sweep:
            _check_layers_inside("sweep.layers", {**model, "layers": sweep["layers"]})
        if "d_model" in model:
            # Every (expansion, k) the model's SAEs are trained at: the study's, and the sweep's grid.
            points = [("sae.k", config["sae"]["expansion_factor"], config["sae"]["k"])]
            if name in swept_models:
                points += [("sweep.k", e, k) for e in sweep["expansion_factors"] for k in sweep["k"]]
            for key, expansion, k in points:
                if k > expansion * model["d_model"]:
                    raise ConfigError(
                        f"config key '{key}': k = {k} exceeds the {expansion * model['d_model']} latents "
                        f"of {name}'s SAE at expansion {expansion}"
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
    if set(SERVED) & set(settings["explainers"]) and per_latent % per_prompt:
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
    # "all" and {every: n} select blocks of the model by construction; a list may name any.
    for layer in model["layers"] if isinstance(model["layers"], list) else []:
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
