"""The fits of a ladder of training runs: Chinchilla's law per precision and Quartet's law across precisions
(its shared parameters on the reference precision's runs, effN and effD per other precision), Chinchilla's
Approach 2 (iso-FLOP profiles) per precision, and each law's error on the held-out top-compute runs, on a
table of runs with the columns n_params, tokens, loss, precision and run_id (`runs_from_tidy` makes one).

Every fit is a result with rows, also one that cannot be made: its parameters are then estimates with value
nan carrying the fit's status and reason, and its R^2 is nan, so whoever reads the rows (a report table, the
claims) finds the parameter and learns why it has no value. An R^2 is only given for a converged fit."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import pandas as pd

from tradeoffs.fit.holdout import holdout_error
from tradeoffs.fit.isoflop import ISO_FLOP_TOLERANCE
from tradeoffs.fit.laws import CHINCHILLA_ESTIMATES, QUARTET_ESTIMATES
from tradeoffs.fit.result import TOO_FEW_RUNS, Estimate, FitResult, cannot_fit
from tradeoffs.fit.robust import FitOptions
from tradeoffs.fit.table import fit_table

ALL_PRECISIONS = "all"  # the precision label of a Quartet fit's quality rows (its fit spans every precision)
# The columns of a ladder's runs from the tidy table of train runs (runs_from_tidy's `metrics` and `fields`).
TRAIN_RUN_METRICS = {"loss": "final_val_loss", "n_params": "non_embedding_parameters", "tokens": "training_tokens"}
TRAIN_RUN_FIELDS = {"precision": "cfg.recipe.name"}


def _placeholders(result: FitResult, expected: Iterable[tuple[str, dict]]) -> FitResult:
    """The result with a nan estimate (the fit's status and reason) for each expected (name, labels) it lacks,
    and R^2 nan unless it converged."""
    have = {(e.name, tuple(sorted(e.labels.items()))) for e in result.estimates}
    missing = tuple(
        Estimate(
            name,
            math.nan,
            labels=labels,
            status=result.status,
            reason=result.reason,
            identified=False,
            identification=result.reason,
        )
        for name, labels in expected
        if (name, tuple(sorted(labels.items()))) not in have
    )
    quality = dict(result.quality) if result.ok else {**result.quality, "r2": math.nan}
    return replace(result, estimates=result.estimates + missing, quality=quality)


def _quartet(runs: pd.DataFrame, options: FitOptions, reference: str) -> FitResult:
    """Quartet's fit with the shared parameters labelled by the reference precision."""
    precisions = list(dict.fromkeys(runs["precision"]))
    if reference in precisions:
        (result,) = fit_table("quartet", runs, options, reference=reference)
    else:
        found = ", ".join(map(str, precisions)) or "none"
        reason = f"no {reference} runs to fit the shared parameters on (precisions of the runs: {found})"
        result = cannot_fit("quartet", TOO_FEW_RUNS, reason, level=options.level, seed=options.seed)
    shared = {"precision": reference}
    estimates = tuple(e if "precision" in e.labels else replace(e, labels=shared) for e in result.estimates)
    result = replace(result, estimates=estimates, labels={"precision": ALL_PRECISIONS})
    expected = [(name, shared) for name in QUARTET_ESTIMATES]
    expected += [(name, {"precision": p}) for p in precisions if p != reference for name in ("eff_n", "eff_d")]
    return _placeholders(result, expected)


def ladder_fits(
    runs: pd.DataFrame,
    options: FitOptions | None = None,
    reference: str = "fp32",
    tolerance: float = ISO_FLOP_TOLERANCE,
) -> list[FitResult]:
    """Chinchilla (L = E + A/N^alpha + B/D^beta) fitted per precision, then Quartet's L = (A/(N effN)^alpha +
    B/(D effD)^beta)^gamma + E with A, alpha, B, beta, gamma, E on the `reference` runs and effN, effD per
    other precision; each result labelled by its precision (Quartet's shared parameters by `reference`, its
    quality by "all"). Then Approach 2 per precision (iso-FLOP groups within `tolerance` of compute) and the
    holdout error of Chinchilla on the reference runs and of Quartet on all (label law). Runs with a nan loss
    (diverged) are left out and counted by each fit."""
    options = options or FitOptions()
    results = []
    if len(runs):
        for result in fit_table("chinchilla", runs, options, group_by=("precision",)):
            precision = result.labels["precision"]
            results.append(_placeholders(result, [(name, {"precision": precision}) for name in CHINCHILLA_ESTIMATES]))
    results.append(_quartet(runs, options, reference))
    if len(runs):
        results += fit_table("iso_flop", runs, options, group_by=("precision",), tolerance=tolerance)
        own = runs[runs["precision"] == reference]
        if len(own):
            results.append(holdout_error(own, "chinchilla", options, tolerance, reference, reference))
            results.append(holdout_error(runs, "quartet", options, tolerance, reference, ALL_PRECISIONS))
    return results
