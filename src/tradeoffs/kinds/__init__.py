"""Experiment kinds: each is a module with `run(config, out_dir) -> Outcome`; the schema is in config.py
and the rule in workflow/rules/<kind>.smk. Modules are imported on demand (torch is slow to import)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from tradeoffs.config import EXPERIMENT_SCHEMAS, ExperimentConfig
from tradeoffs.errors import check_choice
from tradeoffs.results import Outcome

KindRunner = Callable[[ExperimentConfig, Path], Outcome]


def get_runner(kind: str) -> KindRunner:
    """The `run` function of an experiment kind."""
    check_choice("experiment kind", kind, EXPERIMENT_SCHEMAS)
    return importlib.import_module(f"tradeoffs.kinds.{kind}").run
