"""The crossover kind: the INT-vs-FP paper's QSNR model for one INT/FP format pair over a grid of crest
factors, and the crest factor where the two tie."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tradeoffs.errors import ConfigError, check_positive
from tradeoffs.formats import FormatSpec
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind, require_cpu
from tradeoffs.numerics.theory import crossover_crest, model_qsnr_db, theory_format
from tradeoffs.results import Metric, Outcome


@dataclass
class CrossoverConfig(ExperimentConfig):
    """The INT-vs-FP paper's QSNR model for an INT/FP format pair over crest factors (the crossover kind)."""

    kind: str = "crossover"
    int_format: FormatSpec = field(default_factory=FormatSpec)
    fp_format: FormatSpec = field(default_factory=FormatSpec)
    kappa_min: float = 1.0
    kappa_max: float = 12.0
    points: int = 111

    def __post_init__(self) -> None:
        if self.int_format.element_format.kind != "int" or self.fp_format.element_format.kind != "float":
            raise ConfigError(
                f"crossover: int_format must have an integer element and fp_format a minifloat, got "
                f"'{self.int_format.element}' and '{self.fp_format.element}'"
            )
        check_positive("points", self.points)
        if not 1.0 <= self.kappa_min < self.kappa_max:
            raise ConfigError(f"crossover: need 1 <= kappa_min < kappa_max, got {self.kappa_min}, {self.kappa_max}")


def run(config: CrossoverConfig, job: Job) -> Outcome:
    require_cpu(config)
    int_fmt, fp_fmt = theory_format(config.int_format), theory_format(config.fp_format)
    kappas = np.linspace(config.kappa_min, config.kappa_max, config.points)
    metrics = [
        Metric("qsnr_theory_db", float(value), "dB", {"format": fmt.name, "crest": round(float(kappa), 4)})
        for fmt in (int_fmt, fp_fmt)
        for kappa, value in zip(kappas, model_qsnr_db(fmt, kappas), strict=True)
    ]
    metrics.append(Metric("crossover_crest", crossover_crest(int_fmt, fp_fmt)))
    return Outcome(metrics=metrics)


KIND = Kind(CrossoverConfig, run)
