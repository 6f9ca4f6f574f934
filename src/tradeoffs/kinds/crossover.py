"""The crossover kind: the INT-vs-FP paper's QSNR model for one INT/FP format pair over a grid of crest
factors, and the crest factor where the two tie."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tradeoffs.config import CrossoverConfig
from tradeoffs.numerics.theory import crossover_crest, qsnr_db, theory_format
from tradeoffs.results import Metric, Outcome


def run(config: CrossoverConfig, out_dir: Path) -> Outcome:
    int_fmt, fp_fmt = theory_format(config.int_format), theory_format(config.fp_format)
    kappas = np.linspace(config.kappa_min, config.kappa_max, config.points)
    metrics = [
        Metric("qsnr_theory_db", float(value), "dB", {"format": fmt.name, "crest": round(float(kappa), 4)})
        for fmt in (int_fmt, fp_fmt)
        for kappa, value in zip(kappas, qsnr_db(fmt, kappas), strict=True)
    ]
    metrics.append(Metric("crossover_crest", crossover_crest(int_fmt, fp_fmt)))
    return Outcome(metrics=metrics)
