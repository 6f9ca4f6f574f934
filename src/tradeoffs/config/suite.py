"""Suites (conf/suite/<name>.yaml): the studies one `snakemake` run plans, their schema and loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tradeoffs.config.compose import explain
from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.kinds import kind_names
from tradeoffs.paths import suite_file

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


def load_suite(name: str) -> SuiteConfig:
    """Load and validate conf/suite/<name>.yaml."""
    path = suite_file(name)
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SuiteConfig), OmegaConf.load(path)))
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or error
        raise ConfigError(f"suite '{name}': {path} is not valid YAML{line}: {problem}") from None
    except OmegaConfBaseException as error:
        raise explain(f"suite '{name}'", error) from None
    if not suite.experiments:
        raise ConfigError(f"suite '{name}': experiments: no studies in {path}; give at least one (<study>: {{...}})")
    for study, sweep in suite.experiments.items():
        sweep.kind = sweep.kind or study
        check_choice(f"suite '{name}', study '{study}': experiment kind", sweep.kind, kind_names())
        for key, value in {**sweep.fixed, **sweep.sweep, **sweep.zip}.items():
            if key.split(".", 1)[0] in PLANNED_KEYS:
                raise ConfigError(
                    f"suite '{name}', study '{study}': {key} is set by the planner from the study's `source`, "
                    f"not by a suite (got {key}: {value!r}); name the study to read with `source: <study>`; "
                    f"valid studies: {', '.join(suite.experiments)}"
                )
        lengths = {len(values) for values in sweep.zip.values()}
        if len(lengths) > 1:
            raise ConfigError(
                f"suite '{name}', study '{study}': zip axes need lists of one length, got {sorted(lengths)}"
            )
    return suite
