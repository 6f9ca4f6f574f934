"""The pipeline's configuration: composing experiment configs with Hydra and loading the suites
(compose.py), the suites' schema (suite.py) and the table of config groups (groups.py). Library configs live
with their code (ModelConfig in tradeoffs.models, FormatSpec in tradeoffs.formats, ...), a kind's schema beside
its run function (tradeoffs.kinds), and the identity hash in tradeoffs.identity."""

from tradeoffs.identity import config_hash
from tradeoffs.pipeline.config.compose import (
    compose,
    explain,
    hydra_session,
    load_experiment,
    load_suite,
    register_schemas,
    shared_defaults,
    to_typed,
)
from tradeoffs.pipeline.config.suite import SuiteConfig, SweepConfig

__all__ = [
    "SuiteConfig",
    "SweepConfig",
    "compose",
    "config_hash",
    "explain",
    "hydra_session",
    "load_experiment",
    "load_suite",
    "register_schemas",
    "shared_defaults",
    "to_typed",
]
