"""Named formats: one conf/format/<name>.yaml each (the single source), plus ad-hoc element names."""

from __future__ import annotations

from dataclasses import fields
from functools import cache

import yaml

from tradeoffs.errors import ConfigError
from tradeoffs.formats.spec import FormatSpec, parse_element
from tradeoffs.paths import conf_dir

_SPEC_FIELDS = {f.name for f in fields(FormatSpec)}


def format_names() -> list[str]:
    """Names of the formats defined in conf/format/."""
    return sorted(p.stem for p in (conf_dir() / "format").glob("*.yaml"))


@cache
def _load_named(name: str) -> FormatSpec:
    path = conf_dir() / "format" / f"{name}.yaml"
    values = yaml.safe_load(path.read_text()) or {}
    values = {k: v for k, v in values.items() if k != "defaults"}
    unknown = set(values) - _SPEC_FIELDS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; valid keys: {sorted(_SPEC_FIELDS)}")
    return FormatSpec(**{"name": name, **values})


def get_format(name_or_spec: str | FormatSpec) -> FormatSpec:
    """A FormatSpec from a FormatSpec, a name in conf/format/ (e.g. "mxfp4", "nvfp4"), or an element
    name for a per-tensor format ("e3m4", "int5", "fp8_e4m3")."""
    if isinstance(name_or_spec, FormatSpec):
        return name_or_spec
    name = str(name_or_spec)
    if (conf_dir() / "format" / f"{name}.yaml").is_file():
        return _load_named(name)
    try:
        parse_element(name)
    except ConfigError as error:
        raise ConfigError(
            f"unknown format '{name}': not in conf/format/ ({', '.join(format_names())}) "
            f"and not an element name ({error})"
        ) from None
    return FormatSpec(name=name, element=name)
