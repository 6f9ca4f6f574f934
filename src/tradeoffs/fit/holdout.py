"""Extrapolation error of a scaling law: the runs of the largest compute (each precision's top iso-FLOP group
of C = 6ND, tradeoffs.fit.isoflop.compute_groups) are held out, the law is fitted to the rest, and its
prediction for the held-out runs is compared with their final losses in log space (a log error of 0.01 is
a 1% error of the loss)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from tradeoffs.fit.isoflop import FLOPS_PER_PARAMETER_TOKEN, ISO_FLOP_TOLERANCE, compute_groups
from tradeoffs.fit.laws import predict_loss
from tradeoffs.fit.result import OK, TOO_FEW_RUNS, FitResult
from tradeoffs.fit.robust import FitOptions
from tradeoffs.fit.table import fit_table

HOLDOUT_QUALITY = (
    "holdout_runs",
    "holdout_rmse_log",
    "holdout_mean_log_error",
    "holdout_max_abs_log_error",
    "train_rmse_log",
    "holdout_min_compute",
    "train_max_compute",
)


def held_out(runs: pd.DataFrame, tolerance: float = ISO_FLOP_TOLERANCE) -> pd.Series:
    """Whether each run (columns n_params, tokens, precision; finite loss) is in its precision's top compute
    group (C = 6ND, groups as Approach 2's)."""
    compute = FLOPS_PER_PARAMETER_TOKEN * runs["n_params"] * runs["tokens"]
    top = pd.Series(False, index=runs.index)
    for _, part in runs.groupby("precision", sort=False):
        groups = compute_groups(compute[part.index], tolerance)
        top[part.index] = groups == groups.max()
    return top


def holdout_error(
    runs: pd.DataFrame,
    law: str,
    options: FitOptions | None = None,
    tolerance: float = ISO_FLOP_TOLERANCE,
    reference: str = "fp32",
    label: str = "all",
) -> FitResult:
    """Fit `law` (chinchilla: one fit of these runs; quartet: shared parameters on `reference`) without the
    top-compute runs of each precision and score its prediction of them: quality holdout_rmse_log,
    holdout_mean_log_error (observed minus predicted: negative where the law predicts too high a loss),
    holdout_max_abs_log_error, train_rmse_log (in-sample), holdout_runs and the compute of both sets;
    residuals are the held-out runs' log errors. Labelled law and precision (`label`)."""
    options = options or FitOptions()
    runs = runs[np.isfinite(runs["loss"])].reset_index(drop=True)
    labels = {"law": law, "precision": label}
    if runs.empty:
        return _unmeasured(TOO_FEW_RUNS, "no run with a finite loss", {}, (), labels, options)
    top = held_out(runs, tolerance)
    train, test = runs[~top], runs[top]
    compute = FLOPS_PER_PARAMETER_TOKEN * runs["n_params"] * runs["tokens"]
    quality = {
        "holdout_runs": float(len(test)),
        "holdout_min_compute": float(compute[top].min()),
        "train_max_compute": float(compute[~top].max()) if len(train) else math.nan,
    }
    ids = tuple(map(str, train["run_id"]))
    if train.empty or (law == "quartet" and reference not in set(train["precision"])):
        reason = f"no {reference if law == 'quartet' else ''} runs left to fit once the top-compute runs are held out"
        return _unmeasured(TOO_FEW_RUNS, " ".join(reason.split()), quality, ids, labels, options)
    (fit,) = fit_table(law, train.reset_index(drop=True), _no_bootstrap(options), reference=reference)
    if not fit.ok:
        reason = f"fitted without the top-compute runs: {fit.reason}"
        return _unmeasured(fit.status, reason, quality, ids, labels, options)
    predicted = np.full(len(test), math.nan)
    for precision, part in test.groupby("precision", sort=False):
        own = None if law == "chinchilla" or precision == reference else precision
        try:
            positions = test.index.get_indexer(part.index)
            predicted[positions] = predict_loss(fit, part["n_params"], part["tokens"], own)
        except KeyError:  # that precision's multipliers were not estimated
            continue
    errors = np.log(test["loss"].to_numpy(float)) - np.log(predicted)
    finite = np.isfinite(errors)
    quality |= {
        "holdout_rmse_log": float(np.sqrt(np.mean(errors[finite] ** 2))) if finite.any() else math.nan,
        "holdout_mean_log_error": float(np.mean(errors[finite])) if finite.any() else math.nan,
        "holdout_max_abs_log_error": float(np.max(np.abs(errors[finite]))) if finite.any() else math.nan,
        "train_rmse_log": float(fit.quality.get("rmse_log", math.nan)),
    }
    unpredicted = int((~finite).sum())
    return FitResult(
        fit="holdout",
        status=OK,
        reason=f"{unpredicted} held-out run(s) of a precision without fitted multipliers" if unpredicted else "",
        quality=quality,
        residuals={str(r): float(e) for r, e, ok in zip(test["run_id"], errors, finite, strict=True) if ok},
        run_ids=ids,
        level=options.level,
        seed=options.seed,
        labels=labels,
    )


def _no_bootstrap(options: FitOptions) -> FitOptions:
    return replace(options, n_bootstrap=0)


def _unmeasured(status, reason, quality, ids, labels, options) -> FitResult:
    """A holdout result that says why no error was measured (its error rows nan)."""
    filled = {key: quality.get(key, math.nan) for key in HOLDOUT_QUALITY}
    return FitResult(
        "holdout", status, reason, quality=filled, run_ids=ids, level=options.level, seed=options.seed, labels=labels
    )
