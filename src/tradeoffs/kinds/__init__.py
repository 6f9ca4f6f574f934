"""Experiment kinds. Each module of this package is one kind: its schema (a dataclass extending
ExperimentConfig), its `run(config, job) -> Outcome` and its resource sizer, declared as
`KIND = Kind(schema, run, resources)`. The module's name is the kind's name; nothing else lists the kinds.
Modules are imported on first use (they import torch)."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path

from tradeoffs.errors import ConfigError, check_choice

_NOT_KINDS = {"base", "sources"}


@functools.cache
def kind_names() -> tuple[str, ...]:
    """Every experiment kind, from the package's modules (no import)."""
    here = [str(Path(__file__).parent)]
    names = (m.name for m in pkgutil.iter_modules(here))
    return tuple(sorted(n for n in names if not n.startswith("_") and n not in _NOT_KINDS))


def get_kind(name: str):
    """The Kind declared by tradeoffs.kinds.<name>."""
    check_choice("experiment kind", name, kind_names())
    kind = importlib.import_module(f"tradeoffs.kinds.{name}").KIND
    if kind.name != name:
        raise ConfigError(f"tradeoffs.kinds.{name} declares a schema of kind '{kind.name}'")
    return kind
