"""Which settings define a result and which only say how a job runs.

Snakemake reruns a finished job when one of its params changes. Jobs get only the settings that
define their results as params; the operational ones (devices, batch sizes of forward passes,
timeouts, concurrency, the LLM server's interpreter, resources and extra flags), marked
`x-operational: true` in the config schema, reach a job through the run's config instead, so a
change of them (raising a timeout after an error message says so, moving to another GPU) never
makes a finished study redo its GPU work.

A result-defining key added after studies finished under the behaviour its default keeps is marked
`x-params-omit-default: true`: at its default it is left out of the params, so adding the key
reruns nothing, while setting it to another value reruns what it changes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from .config import load_schema

OPERATIONAL = "x-operational"
OMIT_DEFAULT = "x-params-omit-default"


@functools.cache
def _schema() -> dict[str, Any]:
    return load_schema()


def _section_schema(section: str) -> dict[str, Any]:
    """The schema of a section: a dotted path of properties, or "model" for a model entry."""
    if section == "model":
        return _schema()["$defs"]["model"]
    node = _schema()
    for key in section.split("."):
        node = node["properties"][key]
    return node


def operational_keys(section: str) -> set[str]:
    """The operational keys of a config section (a dotted path, e.g. "autointerp.llm", or "model")."""
    return {key for key, spec in _section_schema(section).get("properties", {}).items() if spec.get(OPERATIONAL)}


def result_defining(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` of `section` without its operational keys, nor the keys that are at a default that
    keeps an earlier behaviour, nested sections included: a job's params."""
    properties = _section_schema(section).get("properties", {})
    operational = operational_keys(section)
    kept = {}
    for key, value in values.items():
        spec = properties.get(key, {})
        if key in operational or (spec.get(OMIT_DEFAULT) and value == spec.get("default")):
            continue
        nested = spec.get("properties")
        kept[key] = result_defining(f"{section}.{key}", value) if nested and isinstance(value, Mapping) else value
    return kept


def with_operational(params: Mapping[str, Any], run_settings: Mapping[str, Any]) -> dict[str, Any]:
    """A job's settings of one section: its params (what defines its result, and its own point of a
    sweep) over the run's config section, which adds the operational keys."""
    merged = dict(run_settings)
    for key, value in params.items():
        inner = run_settings.get(key)
        merged[key] = (
            with_operational(value, inner) if isinstance(value, Mapping) and isinstance(inner, Mapping) else value
        )
    return merged
