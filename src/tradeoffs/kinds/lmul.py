"""The lmul kind: mean relative error of L-Mul with several mantissa widths and of floating-point
multiplies (FP8 E4M3/E5M2...) on one set of random operands."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind, require_cpu
from tradeoffs.numerics.lmul import float_multiply, lmul, random_operands, relative_errors
from tradeoffs.results import Metric, Outcome


@dataclass
class LMulConfig(ExperimentConfig):
    """Relative error of L-Mul and of floating-point multiplies on random operands (the lmul kind)."""

    kind: str = "lmul"
    mantissa_bits: list[int] = field(default_factory=lambda: [2, 3, 4, 5])
    float_formats: list[str] = field(default_factory=lambda: ["fp8_e4m3", "fp8_e5m2"])
    operands: str = "loguniform"
    n_values: int = 2**20

    def __post_init__(self) -> None:
        check_choice("operands", self.operands, ("loguniform", "gaussian"))
        check_positive("n_values", self.n_values)
        for bits in self.mantissa_bits:
            if not 1 <= bits <= 10:
                raise ConfigError(f"lmul: mantissa_bits must be within 1..10, got {bits}")
        for name in self.float_formats:
            if not re.fullmatch(r"(fp\d+_)?e\d+m\d+", name):
                raise ConfigError(f"lmul: float_formats takes minifloat element names like fp8_e4m3, got '{name}'")


def run(config: LMulConfig, job: Job) -> Outcome:
    require_cpu(config)
    x, y = random_operands(config.n_values, config.operands, config.seed)
    products = {f"lmul_m{m}": lmul(x, y, m) for m in config.mantissa_bits}
    products |= {name: float_multiply(x, y, name) for name in config.float_formats}
    metrics = []
    for multiplier, product in products.items():
        errors = relative_errors(product, x, y)
        labels = {"multiplier": multiplier}
        metrics += [
            Metric("mean_relative_error", errors.mean().item(), "", labels),
            Metric("rms_relative_error", errors.square().mean().sqrt().item(), "", labels),
        ]
    return Outcome(metrics=metrics)


KIND = Kind(LMulConfig, run)
