"""The lmul kind: mean relative error of L-Mul with several mantissa widths and of floating-point
multiplies (FP8 E4M3/E5M2...) on one set of random operands."""

from __future__ import annotations

from pathlib import Path

from tradeoffs.config import LMulConfig
from tradeoffs.numerics.lmul import float_multiply, lmul, random_operands, relative_errors
from tradeoffs.results import Metric, Outcome


def run(config: LMulConfig, out_dir: Path) -> Outcome:
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
