"""Divergence rate against the bits of a training format (To FP8 and Back Again, 2024): per bit width the
fraction of runs (seeds x learning rates) that diverged, with a Wilson binomial interval, and a
Cochran-Armitage trend test of the rate against bits (z < 0: fewer bits, more divergence)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, norm

from tradeoffs.errors import ConfigError
from tradeoffs.fit.groups import group_rows
from tradeoffs.fit.laws import run_ids_or_rows
from tradeoffs.fit.result import OK, TOO_FEW_RUNS, Estimate, FitResult, cannot_fit


def armitage_trend(scores: np.ndarray, runs: np.ndarray, events: np.ndarray) -> float:
    """Cochran-Armitage z of event proportions against ordered scores (nan when no variation)."""
    total, rate = runs.sum(), events.sum() / runs.sum()
    statistic = (scores * (events - runs * rate)).sum()
    variance = rate * (1 - rate) * ((runs * scores**2).sum() - (runs * scores).sum() ** 2 / total)
    return float(statistic / math.sqrt(variance)) if variance > 0 else math.nan


def divergence_rate(
    bits: Sequence[float],
    diverged: Sequence[bool],
    settings: Sequence[Mapping[str, Any]] | None = None,
    run_ids: Sequence[str] | None = None,
    level: float = 0.95,
) -> FitResult:
    """Per setting (e.g. {"varied": "mantissa"} per run) and bit width, the divergence rate with its Wilson
    interval; per setting `trend_z` and `trend_p` (one-sided p-value that the rate falls as bits rise), which
    need at least 2 bit widths and runs that differ in outcome."""
    bits = np.asarray(bits, float)
    diverged = np.asarray(diverged)
    if diverged.shape != bits.shape or bits.ndim != 1:
        raise ConfigError(f"diverged: expected one value per run ({bits.shape}), got shape {diverged.shape}")
    if not np.all(np.isin(diverged, (0, 1, True, False))):
        raise ConfigError(
            f"diverged: values must be true/false or 0/1, got {diverged[~np.isin(diverged, (0, 1))][0]!r}"
        )
    if not np.all(np.isfinite(bits)):
        raise ConfigError("bits: every run needs a finite bit width")
    diverged = diverged.astype(bool)
    ids = run_ids_or_rows(run_ids, len(bits))
    if not len(bits):
        return cannot_fit("divergence", TOO_FEW_RUNS, "no runs", level=level)
    estimates: list[Estimate] = []
    for setting, rows in group_rows(settings, len(bits)):
        levels = np.unique(bits[rows])
        runs = np.array([(bits[rows] == b).sum() for b in levels])
        events = np.array([diverged[rows][bits[rows] == b].sum() for b in levels])
        for b, n, k in zip(levels, runs, events, strict=True):
            interval = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
            labels = {**setting, "bits": float(b), "n": int(n), "diverged": int(k)}
            estimates.append(Estimate("divergence_rate", k / n, interval.low, interval.high, labels))
        z = armitage_trend(levels, runs, events) if len(levels) >= 2 else math.nan
        reason = (
            ""
            if math.isfinite(z)
            else ("a single bit width" if len(levels) < 2 else "every run has the same outcome: no trend to test")
        )
        status = OK if math.isfinite(z) else TOO_FEW_RUNS
        estimates.append(Estimate("trend_z", z, labels=setting, status=status, reason=reason))
        estimates.append(
            Estimate(
                "trend_p",
                float(norm.cdf(z)) if math.isfinite(z) else math.nan,
                labels=setting,
                status=status,
                reason=reason,
            )
        )
    quality = {"n_runs": len(bits), "n_diverged": int(diverged.sum())}
    return FitResult("divergence", OK, "", tuple(estimates), quality, {}, ids, level)
