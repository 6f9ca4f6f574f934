"""The schema each config group's options are validated against (conf/<group>/*.yaml; tests check every file).
Each schema lives with the code it configures; this table only names them."""

from __future__ import annotations

from tradeoffs.bench.timing import BenchConfig
from tradeoffs.data import DataConfig
from tradeoffs.formats import FormatSpec
from tradeoffs.hardware import HardwareConfig
from tradeoffs.models import ModelConfig
from tradeoffs.numerics.distributions import DistributionConfig
from tradeoffs.pipeline.config.suite import SuiteConfig
from tradeoffs.train.config import RecipeConfig

GROUP_SCHEMAS: dict[str, type] = {
    "format": FormatSpec,
    "distribution": DistributionConfig,
    "hardware": HardwareConfig,
    "model": ModelConfig,
    "data": DataConfig,
    "recipe": RecipeConfig,
    "bench": BenchConfig,
    "suite": SuiteConfig,
}


def option_schemas() -> dict[str, dict[str, type]]:
    """Groups whose options each have a schema of their own, by group and option: the quant kind's `method`, one
    schema per registered PTQ method. An option file names its schema first in its defaults list,
    `/schema/<group>/<option>@_here_`."""
    from tradeoffs.kinds.quant import method_schemas

    return {"method": method_schemas()}
