"""Suites (conf/suite/<name>.yaml): the schema of the studies one `snakemake` run plans (loaded and validated by
tradeoffs.pipeline.config.compose.load_suite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Keys only the planner sets (from a study's `source`): a suite naming them could point a job at any path.
PLANNED_KEYS = ("source", "source_id", "source_ids")


@dataclass
class SweepConfig:
    """One study of a suite: a grid over `sweep` axes (group options or dotted keys) times the rows of
    `zip` (axes varied together, all lists of one length), with `fixed` overrides for all, minus the
    combinations matched by an `exclude` entry. `kind` defaults to the study's name in the suite. With a
    `source` study, every point runs once per matching source experiment, whose resolved config fills the
    kind's `source` field and whose result is the job's input."""

    kind: str = ""
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    source: str = ""  # a study (earlier in the suite) whose experiments this one reads, one run per source
    source_where: dict[str, Any] = field(default_factory=dict)  # dotted config keys the sources must match
    fixed: dict[str, Any] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SuiteConfig:
    """A suite (conf/suite/): the experiments one `snakemake` run plans."""

    name: str = ""
    description: str = ""
    experiments: dict[str, SweepConfig] = field(default_factory=dict)
