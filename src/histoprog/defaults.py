"""The one source of every config default: the config schema (config/README.md, "Defaults").

``schemas/config.schema.yaml`` gives each key's type, range and default; the workflow
validates the run's config against it (missing keys get their default), and the commands'
options and the settings dataclasses take their defaults from :func:`default`. Torch-free
(PyYAML only), so any module may import it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from histoprog.errors import InputError

__all__ = ["CONFIG_SCHEMA", "RENAMED", "check_renamed", "default", "default_config"]

CONFIG_SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"
"""The config schema (JSON Schema in YAML); the workflow's ``validate`` reads it too."""

RENAMED = {
    "hcc.mil.t": "hcc.mil.threshold",
    "hcc.mil.p": "hcc.mil.power",
    "crlm.calibration_B": "crlm.calibration_bootstrap_reps",
    "crlm.calibration_m": "crlm.calibration_group_size",
}
"""Old config key -> its new name. A config using an old key stops with the new name;
model bundles exported before the rename lock the old keys (read as the new ones)."""


@cache
def _schema() -> dict[str, Any]:
    # libyaml's parser with PyYAML's safe constructors (yaml.safe_load's result): every job
    # reads the schema at start, ~0.1 s with the pure-Python parser, ~0.01 s with libyaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(CONFIG_SCHEMA.read_text(), Loader=loader)


def _fill(schema: Mapping[str, Any], values: dict[str, Any]) -> None:
    """Set missing keys to their schema defaults, depth first (as jsonschema validators do)."""
    ref = schema.get("$ref")
    if ref:
        schema = _schema()[ref.removeprefix("#/").split("/")[0]][ref.rsplit("/", 1)[1]]
    for name, sub in schema.get("properties", {}).items():
        if name not in values and "default" in sub:
            values[name] = copy.deepcopy(sub["default"])
        if isinstance(values.get(name), dict):
            _fill(sub, values[name])


def default_config() -> dict[str, Any]:
    """The whole config as the schema's defaults make it (a fresh copy)."""
    values: dict[str, Any] = {}
    _fill(_schema(), values)
    return values


@cache
def _defaults() -> dict[str, Any]:
    return default_config()


def default(key: str) -> Any:
    """The schema default of a dotted config key, e.g. ``default("stain.alpha")`` -> 1.0.

    Lists come back as tuples and mappings as fresh dicts, so a default is never shared.

    Raises:
        KeyError: the key has no default in the schema.
    """
    value: Any = _defaults()
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"config key {key} has no default in {CONFIG_SCHEMA.name}")
        value = value[part]
    if isinstance(value, list):
        return tuple(value)
    return copy.deepcopy(value)


def check_renamed(config: Mapping[str, Any]) -> None:
    """Stop on a config key that was renamed, naming the new key.

    Raises:
        InputError: the first old key found.
    """
    for old, new in RENAMED.items():
        section: Any = config
        *parents, last = old.split(".")
        for part in parents:
            section = section.get(part) if isinstance(section, Mapping) else None
        if isinstance(section, Mapping) and last in section:
            raise InputError(
                f"config key {old}",
                f"was renamed {new}",
                f"write {new.rsplit('.', 1)[1]}: {section[last]!r} in the {'.'.join(parents)} "
                "section of your config file (config/README.md)",
            )
