"""Named formats: the package's presets (tradeoffs.presets, one format/<name>.yaml each, the single source), the
<name>.yaml files of the directories on $TRADEOFFS_FORMATS (searched first; the pipeline puts its conf/format/
there), plus ad-hoc element names."""

from __future__ import annotations

import os
from dataclasses import fields
from functools import cache
from pathlib import Path

import yaml

from tradeoffs.errors import ConfigError
from tradeoffs.formats.spec import FormatSpec, parse_element
from tradeoffs.presets import preset_files

_SPEC_FIELDS = {f.name for f in fields(FormatSpec)}
FORMATS_ENV = "TRADEOFFS_FORMATS"


def format_directories() -> list[Path]:
    """The directories on $TRADEOFFS_FORMATS (os.pathsep between them), searched before the presets: a
    <name>.yaml there adds a named format or replaces the preset of its name."""
    return [Path(d) for d in os.environ.get(FORMATS_ENV, "").split(os.pathsep) if d]


@cache
def _presets() -> dict[str, str]:
    return {name: file.read_text() for name, file in preset_files("format").items()}


def format_names() -> list[str]:
    """Names of the named formats: the presets and the files of format_directories()."""
    added = {p.stem for directory in format_directories() for p in directory.glob("*.yaml")}
    return sorted(set(_presets()) | added)


@cache
def _parse(name: str, text: str, source: str) -> FormatSpec:
    values = yaml.safe_load(text) or {}
    values = {k: v for k, v in values.items() if k != "defaults"}
    unknown = set(values) - _SPEC_FIELDS
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}; valid keys: {sorted(_SPEC_FIELDS)}")
    return FormatSpec(**{"name": name, **values})


@cache
def _read_added(path: Path, modified_ns: int) -> str:
    return path.read_text()


def _named(name: str) -> FormatSpec | None:
    """The named format `name` (None when there is none): the first file of format_directories(), else the preset."""
    for directory in format_directories():
        if (path := directory / f"{name}.yaml").is_file():
            return _parse(name, _read_added(path.resolve(), path.stat().st_mtime_ns), str(path))
    if name in _presets():
        return _parse(name, _presets()[name], f"preset format/{name}.yaml")
    return None


def get_format(name_or_spec: str | FormatSpec) -> FormatSpec:
    """A FormatSpec from a FormatSpec, a named format (a preset such as "mxfp4" or "nvfp4", or a file of
    format_directories()), or an element name for a per-tensor format ("e3m4", "int5", "fp8_e4m3")."""
    if isinstance(name_or_spec, FormatSpec):
        return name_or_spec
    name = str(name_or_spec)
    if (named := _named(name)) is not None:
        return named
    try:
        parse_element(name)
    except ConfigError as error:
        raise ConfigError(
            f"unknown format '{name}': not a named format ({', '.join(format_names())}) "
            f"and not an element name ({error})"
        ) from None
    return FormatSpec(name=name, element=name)
