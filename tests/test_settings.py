import dataclasses
import types
import typing

import pytest
import yaml

from saerand.config import SCHEMA, ConfigError, load_config
from saerand.settings import (
    AutointerpSettings,
    SaeSettings,
    StudySettings,
    from_config,
    section_settings,
    study_settings,
)

from .conftest import REPO

CONFIGS = [REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml", REPO / "tests" / "configs" / "mini.yaml"]


def _schema_properties(node: dict, schema: dict) -> dict[str, dict] | None:
    """The named properties of a schema node (following $ref), or None for a node without them."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node.get("properties")


def _section(hint) -> type | None:
    """The dataclass a field holds (alone, optional, or as the values of a dict), if any."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if typing.get_origin(hint) is dict:
        options = (typing.get_args(hint)[1],)
    return next((option for option in options if dataclasses.is_dataclass(option)), None)


def _mismatches(cls: type, node: dict, schema: dict, key: str) -> list[str]:
    properties = _schema_properties(node, schema)
    if properties is None and "additionalProperties" in node:  # `models`: a dict of entries
        properties = _schema_properties(node["additionalProperties"], schema)
    fields = {field.name for field in dataclasses.fields(cls)}
    found = [f"{key}.{name}: in the schema, not in {cls.__name__}" for name in sorted(set(properties) - fields)]
    found += [f"{key}.{name}: in {cls.__name__}, not in the schema" for name in sorted(fields - set(properties))]
    hints = typing.get_type_hints(cls)
    for name in sorted(fields & set(properties)):
        section = _section(hints[name])
        if section is not None:
            found += _mismatches(section, properties[name], schema, f"{key}.{name}")
    return found


def test_every_schema_key_is_a_setting_and_every_setting_a_schema_key():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert _mismatches(StudySettings, schema, schema, "config") == []


def test_a_setting_without_a_schema_default_is_optional_and_one_with_a_default_is_not_repeated():
    """Defaults live in the schema alone: a field defaults only to None, for a key the schema
    leaves unset."""
    schema = yaml.safe_load(SCHEMA.read_text())

    def check(cls, node):
        properties = _schema_properties(node, schema) or _schema_properties(
            node.get("additionalProperties", {}), schema
        )
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            spec = properties[field.name]
            if "$ref" in spec and "default" not in spec:
                spec = {**schema["$defs"][spec["$ref"].split("/")[-1]], **spec}
            if field.default is not dataclasses.MISSING:
                assert field.default is None and "default" not in spec, f"{cls.__name__}.{field.name}"
            if _section(hints[field.name]):
                check(_section(hints[field.name]), properties[field.name])

    check(StudySettings, schema)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_the_shipped_configs_type_into_settings_that_hold_their_values(path):
    config = load_config(path, SCHEMA)
    settings = study_settings(config)
    assert dataclasses.asdict(settings.sae) == config["sae"]
    assert dataclasses.asdict(settings.tokens) == config["tokens"]
    for name, model in config["models"].items():
        typed = dataclasses.asdict(settings.models[name])
        assert {key: typed[key] for key in model} == model
    if "autointerp" in config:
        assert settings.autointerp.llm.saes_per_server == config["autointerp"]["llm"]["saes_per_server"]
    assert (settings.toy is None) == ("toy" not in config)


def test_an_unknown_key_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"config key 'sae.learning_rate': not a setting of SaeSettings"):
        from_config(SaeSettings, {"learning_rate": 1e-3}, "sae")


def test_a_section_alone_gets_the_schemas_defaults_and_its_checks():
    settings = section_settings(SaeSettings, "sae", expansion_factor=4, k=8, batch_size=2, optimizer="adam")
    assert (settings.lr_warmup_steps, settings.dead_feature_threshold, settings.device) == (1000, 10_000_000, "auto")
    assert section_settings(AutointerpSettings, "autointerp").llm.cpus == 8
    with pytest.raises(ConfigError, match=r"config key 'sae.k'"):
        section_settings(SaeSettings, "sae", expansion_factor=4, k=0, batch_size=2, optimizer="adam")
