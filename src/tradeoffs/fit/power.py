"""Log-log exponents: y = c x^k fitted by least squares on log y against log x (e.g. activations, FLOPs or
parameters against a scaling factor s), with t intervals from the regression's standard errors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import linregress, t

from tradeoffs.errors import ConfigError
from tradeoffs.fit.laws import run_ids_or_rows
from tradeoffs.fit.result import OK, TOO_FEW_RUNS, Estimate, FitResult, cannot_fit


def power_law(
    x: Sequence[float],
    y: Sequence[float],
    run_ids: Sequence[str] | None = None,
    labels: Mapping[str, Any] | None = None,
    level: float = 0.95,
) -> FitResult:
    """Fit y = prefactor * x^exponent on positive values; needs at least 3 distinct x (2 points leave no
    residual to size an interval). `labels` qualify the estimates (e.g. strategy and quantity)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"power law: x and y need one value per run, got shapes {x.shape} and {y.shape}")
    for key, values in (("scale", x), ("value", y)):
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ConfigError(f"{key}: a log-log fit needs positive finite values, got {values[~(values > 0)][0]}")
    ids, labels = run_ids_or_rows(run_ids, len(x)), dict(labels or {})
    if len(np.unique(x)) < 3:
        reason = f"{len(np.unique(x))} distinct scales for 2 parameters (need at least 3)"
        estimates = tuple(
            Estimate(name, math.nan, labels=labels, status=TOO_FEW_RUNS, reason=reason)
            for name in ("exponent", "prefactor")
        )
        return cannot_fit("power_law", TOO_FEW_RUNS, reason, ids, estimates=estimates, level=level)
    log_x, log_y = np.log(x), np.log(y)
    fit = linregress(log_x, log_y)
    quantile = t.ppf(0.5 + level / 2, len(x) - 2)
    residuals = log_y - (fit.intercept + fit.slope * log_x)
    estimates = (
        Estimate("exponent", fit.slope, fit.slope - quantile * fit.stderr, fit.slope + quantile * fit.stderr, labels),
        Estimate(
            "prefactor",
            math.exp(fit.intercept),
            math.exp(fit.intercept - quantile * fit.intercept_stderr),
            math.exp(fit.intercept + quantile * fit.intercept_stderr),
            labels,
        ),
    )
    quality = {
        "r2_log": fit.rvalue**2,
        "rmse_log": float(np.sqrt(np.mean(residuals**2))),
        "max_abs_log_residual": float(np.abs(residuals).max()),
    }
    return FitResult(
        "power_law", OK, "", estimates, quality, dict(zip(ids, map(float, residuals), strict=True)), ids, level
    )


def exponents_by_group(
    records: Sequence[Mapping[str, Any]], x: str, quantities: Sequence[str], by: str = "strategy", level: float = 0.95
) -> list[FitResult]:
    """One power_law fit per (group, quantity) of a list of records (dicts with `x`, `by` and each
    quantity), e.g. the records of tradeoffs.models.scaling.scaling_series with x="factor"."""
    results = []
    for group in dict.fromkeys(record[by] for record in records):
        rows = [record for record in records if record[by] == group]
        for quantity in quantities:
            labels = {by: group, "quantity": quantity}
            ids = [str(record.get("run_id", f"{group}-{i}")) for i, record in enumerate(rows)]
            results.append(power_law([r[x] for r in rows], [r[quantity] for r in rows], ids, labels, level))
    return results
