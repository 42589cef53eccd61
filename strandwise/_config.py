"""Config dataclasses from JSON/YAML dicts, with errors that name the bad key.

Every command's defaults live in one dataclass; :func:`from_dict` builds it from a user's mapping,
rejecting unknown keys with the closest valid key suggested, and :func:`to_dict` gives the resolved
config that is written next to a run's outputs.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import typing
from typing import Any, Mapping, TypeVar

__all__ = ["ConfigError", "from_dict", "to_dict", "load_config_file", "read_config", "dump_config"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message names it."""


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields are built recursively.

    Raises
    ------
    ConfigError
        For an unknown key (with the closest valid key suggested) or a non-mapping section.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values; got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown key {key!r} in {where}{_suggest(key, fields)}")
        hint = hints.get(key)
        if dataclasses.is_dataclass(hint) and isinstance(value, (Mapping, type(None))):
            value = from_dict(hint, value, where=f"{where}.{key}")
        kwargs[key] = value
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj) -> dict:
    """Resolved config as plain JSON-able data."""
    return dataclasses.asdict(obj)


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a JSON or YAML config file into a dict, with a clear error for bad files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping at top level")
    return data


def read_config(source, overrides: dict | None = None) -> tuple[dict, str]:
    """``(raw mapping, base folder)`` from a config file or a dict, with ``overrides`` merged.

    A dict-valued override updates that section key by key; any other value replaces it. The base
    folder (the file's folder, or the current directory for a dict) is where relative paths in
    the config are resolved.
    """
    if isinstance(source, Mapping):
        raw, base = dict(source), os.getcwd()
    else:
        raw, base = load_config_file(source), os.path.dirname(os.path.abspath(os.fspath(source)))
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            merged = dict(raw.get(section) or {})
            merged.update(values)
            raw[section] = merged
        else:
            raw[section] = values
    return raw, base


def dump_config(obj, path: str | os.PathLike) -> None:
    """Write the resolved config as JSON, atomically."""
    from strandwise.io.atomic import atomic_write_text

    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
