"""Fits of scaling runs (docs/scaling.md): the Chinchilla and Quartet laws of loss in N and D (Huber loss in
log space, a grid of initialisations, a convergence check, seeded bootstrap intervals), the best QAT
fraction per setting, log-log exponents, and divergence rate against bits; whether the runs identify each
parameter (`identify`); Chinchilla's Approach 2 (`fit_iso_flop`); a law's error on held-out top-compute runs
(`holdout_error`); `ladder_fits` makes all of them for a ladder of runs. Every fit returns a FitResult whose
status says when it could not be made; `FitResult.rows()` gives rows of the tidy table."""

from tradeoffs.fit.divergence import divergence_rate
from tradeoffs.fit.holdout import HOLDOUT_QUALITY, held_out, holdout_error
from tradeoffs.fit.identify import MIN_VALUES, coverage_reason, decades
from tradeoffs.fit.isoflop import CHINCHILLA_APPROACH2, ISO_FLOP_TOLERANCE, compute_groups, fit_iso_flop
from tradeoffs.fit.ladder import ALL_PRECISIONS, TRAIN_RUN_FIELDS, TRAIN_RUN_METRICS, ladder_fits
from tradeoffs.fit.laws import (
    CHINCHILLA_PAPER,
    QUARTET_PAPER,
    chinchilla_loss,
    fit_chinchilla,
    fit_quartet,
    predict_loss,
    quartet_loss,
)
from tradeoffs.fit.power import exponents_by_group, power_law
from tradeoffs.fit.qat import best_qat_fraction
from tradeoffs.fit.result import FIT_STATUSES, NOT_CONVERGED, NOT_IDENTIFIED, OK, TOO_FEW_RUNS, Estimate, FitResult
from tradeoffs.fit.robust import FitOptions
from tradeoffs.fit.table import LAWS, fit_table, read_runs, runs_from_tidy

__all__ = [
    "ALL_PRECISIONS",
    "CHINCHILLA_APPROACH2",
    "CHINCHILLA_PAPER",
    "FIT_STATUSES",
    "HOLDOUT_QUALITY",
    "ISO_FLOP_TOLERANCE",
    "LAWS",
    "MIN_VALUES",
    "NOT_CONVERGED",
    "NOT_IDENTIFIED",
    "OK",
    "QUARTET_PAPER",
    "TOO_FEW_RUNS",
    "TRAIN_RUN_FIELDS",
    "TRAIN_RUN_METRICS",
    "Estimate",
    "FitOptions",
    "FitResult",
    "best_qat_fraction",
    "chinchilla_loss",
    "compute_groups",
    "coverage_reason",
    "decades",
    "divergence_rate",
    "exponents_by_group",
    "fit_chinchilla",
    "fit_iso_flop",
    "fit_quartet",
    "fit_table",
    "held_out",
    "holdout_error",
    "ladder_fits",
    "power_law",
    "predict_loss",
    "quartet_loss",
    "read_runs",
    "runs_from_tidy",
]
