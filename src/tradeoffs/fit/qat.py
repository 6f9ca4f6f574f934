"""The best QAT fraction of a training budget (Compute-Optimal QAT, 2025): a budget split into full-precision
training then QAT for a fraction f of it (0 = PTQ of the final model, 1 = QAT throughout); per setting (bit
width, budget...) the fraction with the lowest mean final loss of the quantized model, its bootstrap interval
(runs resampled within each fraction, the argmin taken again), and its gain over pure PTQ and pure QAT."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tradeoffs.errors import ConfigError
from tradeoffs.fit.groups import group_rows
from tradeoffs.fit.laws import run_ids_or_rows
from tradeoffs.fit.result import OK, TOO_FEW_RUNS, Estimate, FitResult, cannot_fit
from tradeoffs.fit.robust import FitOptions, percentile_interval, resample

MIN_FRACTIONS = 3
QAT_ESTIMATES = ("best_fraction", "loss_at_best", "gain_over_ptq", "gain_over_full_qat", "seed_noise_sd")


def _summary(fractions: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """best fraction, its mean loss, the gains over f=0 and f=1 (nan when absent), from one sample."""
    grid = np.unique(fractions)
    means = np.array([losses[fractions == f].mean() for f in grid])
    best = int(np.argmin(means))

    def mean_at(value: float) -> float:
        return float(means[grid == value][0]) if np.any(grid == value) else math.nan

    return np.array([grid[best], means[best], mean_at(0.0) - means[best], mean_at(1.0) - means[best]])


def _pooled_sd(fractions: np.ndarray, losses: np.ndarray) -> float:
    """Within-fraction standard deviation pooled over fractions (seed noise); nan without repeats."""
    groups = [losses[fractions == f] for f in np.unique(fractions)]
    dof = sum(len(g) - 1 for g in groups)
    return math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / dof) if dof else math.nan


def best_qat_fraction(
    fraction: Sequence[float],
    loss: Sequence[float],
    settings: Sequence[Mapping[str, Any]] | None = None,
    run_ids: Sequence[str] | None = None,
    options: FitOptions | None = None,
) -> FitResult:
    """Per setting (e.g. {"bits": 4, "budget": 1e8} per run), the QAT fraction with the lowest mean loss,
    with bootstrap intervals; a setting with fewer than 3 distinct fractions gets estimates with status
    too_few_runs. Runs with a non-finite loss are left out (counted in quality)."""
    options = options or FitOptions()
    fraction, loss = np.asarray(fraction, float), np.asarray(loss, float)
    if fraction.shape != loss.shape or fraction.ndim != 1:
        raise ConfigError(f"fraction: expected one value per run ({loss.shape}), got shape {fraction.shape}")
    if np.any(~np.isfinite(fraction) | (fraction < 0) | (fraction > 1)):
        raise ConfigError(
            f"fraction: the QAT fraction must be in [0, 1], got {fraction[~((fraction >= 0) & (fraction <= 1))][0]}"
        )
    ids = run_ids_or_rows(run_ids, len(loss))
    keep = np.isfinite(loss)
    rng = np.random.default_rng(options.seed)
    estimates: list[Estimate] = []
    fitted = 0
    for setting, rows in group_rows(settings, len(loss)):
        rows = rows[keep[rows]]
        f, y = fraction[rows], loss[rows]
        distinct = len(np.unique(f))
        if distinct < MIN_FRACTIONS:
            reason = f"{distinct} distinct QAT fractions (need at least {MIN_FRACTIONS} to place an optimum)"
            estimates += [
                Estimate(name, math.nan, labels=setting, status=TOO_FEW_RUNS, reason=reason) for name in QAT_ESTIMATES
            ]
            continue
        fitted += 1
        point = _summary(f, y)
        strata = np.unique(f, return_inverse=True)[1]
        replicates = [_summary(f[p], y[p]) for p in (resample(strata, rng) for _ in range(options.n_bootstrap))]
        samples = np.array(replicates) if replicates else np.empty((0, 4))
        low, high = percentile_interval(samples, options.level) if len(samples) else ([math.nan] * 4,) * 2
        for i, name in enumerate(QAT_ESTIMATES[:4]):
            missing = math.isnan(point[i])
            reason = f"no run with QAT fraction {0 if 'ptq' in name else 1}" if missing else ""
            estimates.append(Estimate(name, float(point[i]), float(low[i]), float(high[i]), setting, OK, reason))
        estimates.append(Estimate("seed_noise_sd", _pooled_sd(f, y), labels=setting))
    used = tuple(i for i, k in zip(ids, keep, strict=True) if k)
    quality = {"n_settings_fitted": fitted, "n_excluded_nonfinite": int((~keep).sum())}
    if not fitted:
        return cannot_fit(
            "qat_fraction",
            TOO_FEW_RUNS,
            estimates[0].reason if estimates else "no runs",
            used,
            estimates=tuple(estimates),
            quality=quality,
            level=options.level,
            seed=options.seed,
        )
    return FitResult("qat_fraction", OK, "", tuple(estimates), quality, {}, used, options.level, options.seed)
