"""The schema each config group's options are validated against (conf/<group>/*.yaml; tests check every file).
Each schema lives with the code it configures; this table only names them."""

from __future__ import annotations

from tradeoffs.bench.timing import BenchConfig
from tradeoffs.config.suite import SuiteConfig
from tradeoffs.data import DataConfig
from tradeoffs.formats import FormatSpec
from tradeoffs.hardware import HardwareConfig
from tradeoffs.models import ModelConfig
from tradeoffs.numerics.distributions import DistributionConfig
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
