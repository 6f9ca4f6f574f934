"""What names a configuration: the fields that describe it without changing a result, and the short hash of
everything else. Plain dataclasses and the standard library only, so the library's own configs (models,
data, recipes, formats) can mark their descriptive fields and a training checkpoint can fingerprint its config
without importing the pipeline."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
from typing import Any

# Fields marked so describe a value without changing any result (names, citations): the hash skips them.
DESCRIPTIVE = {"affects_result": False}


def descriptive(default: Any = "") -> Any:
    """A dataclass field that the identity hash skips (a name, a source, a citation)."""
    return dataclasses.field(default=default, metadata=DESCRIPTIVE)


def plain(config: Any) -> Any:
    """A JSON-ready nested value of a config dataclass (every field, descriptive ones included; an enumeration
    member as its value)."""
    if isinstance(config, enum.Enum):
        return config.value
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {str(k): plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [plain(v) for v in config]
    return config


def result_relevant(config: Any) -> Any:
    """The config with descriptive fields dropped, as plain nested values."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {
            f.name: result_relevant(getattr(config, f.name))
            for f in dataclasses.fields(config)
            if f.metadata.get("affects_result", True)
        }
    if isinstance(config, dict):
        return {str(k): result_relevant(v) for k, v in sorted(config.items())}
    if isinstance(config, (list, tuple)):
        return [result_relevant(v) for v in config]
    return config


def config_hash(config: Any, length: int = 8) -> str:
    """Short sha256 of every value of a config dataclass that affects the result (names and citations excluded)."""
    canonical = json.dumps(result_relevant(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def from_plain(cls: type, data: Any) -> Any:
    """Rebuild a config dataclass from `plain(config)` (nested dataclasses, optional ones, lists and dicts),
    running every __post_init__ check: the inverse of `plain` for a process that receives a config as JSON."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _typed(hints[f.name], data[f.name])
    return cls(**values)


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_typed(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(hint) or (Any, Any)
        return {k: _typed(item, v) for k, v in value.items()}
    return value
