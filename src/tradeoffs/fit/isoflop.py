"""Chinchilla's Approach 2 (Hoffmann et al. 2022, section 3.2): iso-FLOP profiles.

Runs are grouped by training compute C = 6ND (a run joins a group when its compute is within `tolerance`
times the group's cheapest run). In each group with at least MIN_SIZES model sizes, a parabola of the log of
the final loss in log N (log loss: the runs' noise is relative) gives the compute-optimal N_opt at its
minimum (when the parabola opens upwards and its minimum lies among the sizes tried), D_opt = C / (6 N_opt)
and the tokens per parameter D_opt / N_opt. Across groups, log-log least squares gives N_opt ~ C^a and
D_opt ~ C^b (b = 1 - a, as C = 6ND), and the compute-optimal tokens per parameter is the geometric mean of
the groups' D_opt / N_opt.

Intervals come from a seeded residual bootstrap: each group's fitted parabola plus residuals drawn from the
pooled, leverage-corrected residuals of every group (one run per size leaves each group few residuals of its
own), widened by Student-t's over the normal quantile for the pooled residuals' degrees of freedom, refitted.
A group of exactly three runs has no residual: where no group has one, there is no interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from tradeoffs.errors import ConfigError, check_positive
from tradeoffs.fit.identify import coverage_reason
from tradeoffs.fit.laws import checked_runs
from tradeoffs.fit.result import NOT_IDENTIFIED, OK, TOO_FEW_RUNS, Estimate, FitResult, cannot_fit
from tradeoffs.fit.robust import FitOptions, percentile_interval

MIN_SIZES = 3  # a parabola has three coefficients
ISO_FLOP_TOLERANCE = 1.25  # runs within this factor of compute of their group's cheapest share a group
FLOPS_PER_PARAMETER_TOKEN = 6.0
# Hoffmann et al. 2022, Table 2 (Approach 2): N_opt ~ C^0.49, D_opt ~ C^0.51; Chinchilla: 1.4T tokens for 70B
CHINCHILLA_APPROACH2 = {"n_opt_exponent": 0.49, "d_opt_exponent": 0.51, "tokens_per_parameter": 20.0}
GROUP_ESTIMATES = ("n_opt", "d_opt", "ratio_opt", "loss_opt", "curvature")
SUMMARY_ESTIMATES = ("n_opt_exponent", "d_opt_exponent", "tokens_per_parameter")


def compute_groups(compute: Sequence[float], tolerance: float = ISO_FLOP_TOLERANCE) -> np.ndarray:
    """The iso-FLOP group of each run (0, 1, ... by increasing compute): from the cheapest run on, a run starts
    a new group when its compute exceeds `tolerance` times the current group's cheapest."""
    if not tolerance >= 1:
        raise ConfigError(f"iso_flop_tolerance: must be at least 1 (a factor of compute), got {tolerance}")
    compute = np.asarray(compute, float)
    groups = np.empty(len(compute), int)
    start, current = math.nan, -1
    for index in np.argsort(compute, kind="stable"):
        if not compute[index] <= start * tolerance:
            start, current = compute[index], current + 1
        groups[index] = current
    return groups


def _parabola(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients (c2, c1, c0) of y = c2 x^2 + c1 x + c0 and each point's leverage."""
    design = np.vander(x, 3)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    leverage = np.einsum("ij,ji->i", design, np.linalg.pinv(design))
    return coefficients, leverage


def _optimum(coefficients: np.ndarray) -> tuple[float, float, float]:
    """(log N at the minimum, the log loss there, the curvature c2); nan where the parabola opens downwards."""
    c2, c1, c0 = coefficients
    if not c2 > 0:
        return math.nan, math.nan, float(c2)
    x = -c1 / (2 * c2)
    return float(x), float(c0 - c1**2 / (4 * c2)), float(c2)


def _summary(log_c: np.ndarray, log_n_opt: np.ndarray) -> np.ndarray:
    """N_opt and D_opt exponents (nan with fewer than 2 groups) and the geometric mean of D_opt / N_opt."""
    log_d_opt = log_c - math.log(FLOPS_PER_PARAMETER_TOKEN) - log_n_opt
    ratio = float(np.exp(np.mean(log_d_opt - log_n_opt))) if len(log_c) else math.nan
    if len(np.unique(log_c)) < 2:
        return np.array([math.nan, math.nan, ratio])
    a = np.polyfit(log_c, log_n_opt, 1)[0]
    b = np.polyfit(log_c, log_d_opt, 1)[0]
    return np.array([a, b, ratio])


def fit_iso_flop(
    n_params: Sequence[float],
    tokens: Sequence[float],
    loss: Sequence[float],
    run_ids: Sequence[str] | None = None,
    options: FitOptions | None = None,
    tolerance: float = ISO_FLOP_TOLERANCE,
) -> FitResult:
    """Chinchilla's Approach 2 on runs (N, D, final loss): per iso-FLOP group (labels `compute`, `sizes`,
    `group_runs`) n_opt, d_opt, ratio_opt, loss_opt (the parabola's minimum) and curvature (of log loss per
    squared ln N), with a status and reason where a group has
    fewer than 3 sizes or no bracketed minimum; across groups n_opt_exponent, d_opt_exponent and
    tokens_per_parameter. Runs with a non-finite loss are left out and counted."""
    options = options or FitOptions()
    check_positive("iso_flop_tolerance", tolerance)
    runs, _ = checked_runs(n_params, tokens, loss, run_ids)
    log_c = math.log(FLOPS_PER_PARAMETER_TOKEN) + runs.log_n + runs.log_d
    groups = compute_groups(np.exp(log_c), tolerance)
    loss_values = runs.log_loss
    fitted, estimates = [], []
    for group in range(groups.max() + 1 if len(groups) else 0):
        rows = np.flatnonzero(groups == group)
        compute = float(np.exp(log_c[rows].mean()))
        sizes = len(np.unique(runs.log_n[rows]))
        labels = {
            "compute": compute,
            "sizes": sizes,
            "group_runs": json.dumps([runs.run_ids[i] for i in rows]),
        }
        if sizes < MIN_SIZES:
            reason = f"{sizes} model size{'s' * (sizes != 1)} at C ≈ {compute:.3g} FLOP (needs {MIN_SIZES})"
            estimates += [
                Estimate(n, math.nan, labels=labels, status=TOO_FEW_RUNS, reason=reason, identified=False)
                for n in GROUP_ESTIMATES
            ]
            continue
        coefficients, leverage = _parabola(runs.log_n[rows], loss_values[rows])
        x, loss_opt, curvature = _optimum(coefficients)
        low, high = runs.log_n[rows].min(), runs.log_n[rows].max()
        status, reason = OK, ""
        if math.isnan(x):
            status, reason = NOT_IDENTIFIED, f"the profile at C ≈ {compute:.3g} FLOP opens downwards: no minimum"
        elif not low <= x <= high:
            status = NOT_IDENTIFIED
            reason = (
                f"the minimum at C ≈ {compute:.3g} FLOP, N ≈ {math.exp(x):.3g}, lies outside the sizes tried "
                f"({math.exp(low):.3g}..{math.exp(high):.3g})"
            )
        fitted.append((group, rows, coefficients, leverage, labels, status, reason, x, loss_opt, curvature))
    if not fitted:
        counts = [e.labels["sizes"] for e in estimates if e.name == "n_opt"]
        why = f"no iso-FLOP group has {MIN_SIZES} model sizes" + (
            f": {len(counts)} groups (runs within x{tolerance:g} of compute) of "
            f"{min(counts) if min(counts) == max(counts) else f'{min(counts)}-{max(counts)}'} size(s)"
            if counts
            else ": no runs"
        )
        return _without_groups(why, estimates, runs, options)

    usable = [f for f in fitted if f[5] == OK]
    point = _summary(np.array([log_c[f[1]].mean() for f in usable]), np.array([f[7] for f in usable]))
    samples, failed, residual_count = _bootstrap(fitted, usable, runs, loss_values, log_c, options)
    group_samples = samples[:, : 3 * len(fitted)] if len(samples) else np.empty((0, 3 * len(fitted)))
    for i, (_, rows, _, _, labels, status, reason, x, loss_opt, curvature) in enumerate(fitted):
        log_c_group = float(log_c[rows].mean())
        values = _group_values(x, log_c_group)
        low, high = percentile_interval(group_samples[:, 3 * i : 3 * i + 3], options.level)
        if status != OK:
            low, high = np.full(3, math.nan), np.full(3, math.nan)
        for name, value, lo, hi in zip(("n_opt", "d_opt", "ratio_opt"), values, low, high, strict=True):
            estimates.append(Estimate(name, value, lo, hi, labels, status, reason, status == OK, reason))
        estimates.append(Estimate("loss_opt", math.exp(loss_opt), labels=labels, status=status, reason=reason))
        estimates.append(Estimate("curvature", curvature, labels=labels, status=status, reason=reason))
    summary_low, summary_high = percentile_interval(samples[:, 3 * len(fitted) :], options.level)
    coverage = coverage_reason("C", np.array([log_c[f[1]].mean() for f in usable]), options.min_decades)
    for j, name in enumerate(SUMMARY_ESTIMATES):
        value = point[j]
        lo, hi = (summary_low[j], summary_high[j]) if len(samples) else (math.nan, math.nan)
        status, reason = OK, ""
        if not np.isfinite(value):
            needs = 1 if name == "tokens_per_parameter" else 2
            status, reason = TOO_FEW_RUNS, f"{len(usable)} iso-FLOP group(s) with a bracketed minimum (needs {needs})"
        why = reason or (coverage if name != "tokens_per_parameter" else "")
        if not why and not (np.isfinite(lo) and np.isfinite(hi)):
            why = "no bootstrap interval" + ("" if residual_count else ": no group has more runs than 3")
        estimates.append(Estimate(name, float(value), float(lo), float(hi), {}, status, reason, not why, why))
    reasons = [r for r in (_skipped(estimates), _interval_note(residual_count, samples, failed)) if r]
    return FitResult(
        fit="iso_flop",
        status=OK,
        reason="; ".join(reasons),
        estimates=tuple(estimates),
        quality={
            "iso_flop_groups": float(groups.max() + 1),
            "iso_flop_groups_fitted": float(len(fitted)),
            "iso_flop_groups_with_minimum": float(len(usable)),
            "c_decades": float((log_c.max() - log_c.min()) / math.log(10)),
            "n_bootstrap_ok": float(len(samples)),
            "n_bootstrap_failed": float(failed),
            "n_excluded_nonfinite": float(runs.excluded),
        },
        run_ids=runs.run_ids,
        level=options.level,
        seed=options.seed,
    )


def _group_values(x: float, log_c: float) -> list[float]:
    """N_opt, D_opt and D_opt / N_opt of a group whose minimum lies at log N = x."""
    if not np.isfinite(x):
        return [math.nan] * 3
    log_d = log_c - math.log(FLOPS_PER_PARAMETER_TOKEN) - x
    return [math.exp(x), math.exp(log_d), math.exp(log_d - x)]


def _bootstrap(fitted, usable, runs, loss_values, log_c, options: FitOptions) -> tuple[np.ndarray, int, int]:
    """Residual-bootstrap replicates: per fitted group (N_opt, D_opt, D_opt/N_opt), then the summary. Returns
    the replicates (rows), the number that failed (a profile without a minimum) and the residuals pooled."""
    pooled = []
    for _, rows, coefficients, leverage, *_ in fitted:
        residual = loss_values[rows] - np.vander(runs.log_n[rows], 3) @ coefficients
        free = leverage < 1 - 1e-9
        pooled += list(residual[free] / np.sqrt(1 - leverage[free]))
    pooled = np.array(pooled) - (np.mean(pooled) if pooled else 0.0)
    dof = sum(len(rows) - 3 for _, rows, *_ in fitted)
    if dof > 0:  # a variance estimated from few residuals: widen as Student-t's quantile does over the normal's
        tail = (1 + options.level) / 2
        pooled = pooled * stats.t.ppf(tail, dof) / stats.norm.ppf(tail)
    if len(pooled) == 0 or options.n_bootstrap == 0:
        return np.empty((0, 3 * len(fitted) + 3)), 0, len(pooled)
    rng = np.random.default_rng(options.seed)
    samples, failed = [], 0
    usable_groups = {f[0] for f in usable}
    for _ in range(options.n_bootstrap):
        values, optima, computes = [], [], []
        for group, rows, coefficients, *_ in fitted:
            x_rows = runs.log_n[rows]
            y = np.vander(x_rows, 3) @ coefficients + rng.choice(pooled, size=len(rows))
            x, _, _ = _optimum(_parabola(x_rows, y)[0])
            values += _group_values(x, float(log_c[rows].mean()))
            if group in usable_groups:
                optima.append(x)
                computes.append(float(log_c[rows].mean()))
        if not np.all(np.isfinite(optima)):
            failed += 1
            continue
        samples.append(values + list(_summary(np.array(computes), np.array(optima))))
    width = 3 * len(fitted) + 3
    return (np.array(samples) if samples else np.empty((0, width))), failed, len(pooled)


def _skipped(estimates: list[Estimate]) -> str:
    """How many groups could not give a minimum, e.g. '3 of 5 iso-FLOP groups have fewer than 3 sizes'."""
    starved = {e.labels["group_runs"] for e in estimates if e.status == TOO_FEW_RUNS and "group_runs" in e.labels}
    return f"{len(starved)} iso-FLOP group(s) with fewer than {MIN_SIZES} sizes left out" if starved else ""


def _interval_note(residuals: int, samples: np.ndarray, failed: int) -> str:
    if not residuals:
        return "no group has more runs than its parabola's 3 coefficients: no residual to size an interval"
    if failed and failed >= len(samples):
        return f"{failed} of {failed + len(samples)} bootstrap replicates had a profile without a minimum"
    return ""


def _without_groups(reason: str, estimates: list[Estimate], runs, options: FitOptions) -> FitResult:
    """The result when no group has enough sizes: the groups' rows saying why and nan summaries."""
    summary = [
        Estimate(name, math.nan, status=TOO_FEW_RUNS, reason=reason, identified=False, identification=reason)
        for name in SUMMARY_ESTIMATES
    ]
    return cannot_fit(
        "iso_flop",
        TOO_FEW_RUNS,
        reason,
        runs.run_ids,
        estimates=tuple(estimates + summary),
        level=options.level,
        seed=options.seed,
    )
