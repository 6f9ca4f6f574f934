"""The library's presets, shipped inside the package: one YAML file per option in a folder per group, the single
source of each. format/: the named number formats (tradeoffs.formats.get_format); hardware/: the datasheet
peaks (tradeoffs.bench.hardware); bench/: the benchmark engine's timing rules (tradeoffs.bench.cli).

The folders are also Hydra config groups: the pipeline composes conf/ with this package on its search path,
after conf/ (SEARCH_PATH), so `format=mxfp4` picks format/mxfp4.yaml here, and a file conf/<group>/<name>.yaml
adds an option or replaces the preset of its name (docs/architecture.md, "Presets").
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import yaml

from tradeoffs.errors import ConfigError

SEARCH_PATH = f"pkg://{__name__}"


@cache
def preset_groups() -> tuple[str, ...]:
    """The groups of presets (bench, format, hardware)."""
    return tuple(sorted(e.name for e in files(__name__).iterdir() if e.is_dir() and not e.name.startswith(("_", "."))))


def preset_files(group: str) -> dict[str, Traversable]:
    """The preset files of `group` by option name (the file's name without .yaml)."""
    if group not in preset_groups():
        raise ConfigError(f"no preset group '{group}'; groups: {', '.join(preset_groups())}")
    entries = (files(__name__) / group).iterdir()
    return {e.name.removesuffix(".yaml"): e for e in sorted(entries, key=lambda e: e.name) if e.name.endswith(".yaml")}


def load_preset(group: str, name: str) -> dict[str, Any]:
    """The values of one preset, parsed (ConfigError naming the options when there is no such preset)."""
    options = preset_files(group)
    if name not in options:
        raise ConfigError(f"no preset '{name}' in {group}/; options: {', '.join(options)}")
    return yaml.safe_load(options[name].read_text()) or {}
