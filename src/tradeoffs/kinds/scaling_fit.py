"""The scaling_fit kind: the scaling laws of tradeoffs.fit fitted to the final validation losses of every run
of its source study (a ladder of train runs: model sizes x token budgets x training precisions x seeds), read
through the job's planned inputs. Chinchilla's law per precision and Quartet's law across precisions, each
parameter marked identified or not; Chinchilla's Approach 2 per precision; each law's error on the held-out
top-compute runs (`ladder_fits`); each fit's parameters with bootstrap intervals, its quality and per-run
residuals are the result's rows. A fit that cannot be made (too few runs, no convergence) is rows saying so,
in an ok result."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from tradeoffs.errors import ConfigError
from tradeoffs.fit import (
    ISO_FLOP_TOLERANCE,
    TRAIN_RUN_FIELDS,
    TRAIN_RUN_METRICS,
    FitOptions,
    ladder_fits,
    runs_from_tidy,
)
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.kinds.sources import source_results
from tradeoffs.resources import JobResources
from tradeoffs.results import Metric, Outcome, collect

FITTED_STATUSES = ("ok", "diverged")  # a diverged run is a run of the ladder (nan loss, left out and counted)


@dataclass
class ScalingFitConfig(ExperimentConfig):
    """Scaling-law fits of the runs of a source study (the scaling_fit kind): `source_ids` are every
    experiment of that study (set by the planner from the suite's `source`); Quartet's shared parameters are
    fitted on the runs whose recipe is `reference`; the bootstrap (`n_bootstrap` replicates, seeded by `seed`)
    gives intervals at `level`; `huber_delta` and `n_starts` are the fits' loss and starts (FitOptions); an
    exponent counts as identified when its variable spans `min_decades` decades (and its interval excludes
    0); runs within `iso_flop_tolerance` times of compute form one iso-FLOP group (Approach 2, holdout)."""

    kind: str = "scaling_fit"
    source_ids: list[str] = field(default_factory=list)
    reference: str = "fp32"
    n_bootstrap: int = 200
    n_starts: int = 8
    huber_delta: float = 1e-3
    level: float = 0.95
    min_decades: float = 1.0
    iso_flop_tolerance: float = ISO_FLOP_TOLERANCE

    def __post_init__(self) -> None:
        self.options()
        if not self.iso_flop_tolerance >= 1:
            raise ConfigError(
                f"iso_flop_tolerance: must be a factor of compute of at least 1, got {self.iso_flop_tolerance}"
            )

    def options(self) -> FitOptions:
        """The fits' settings (validated: a bad value names its key)."""
        return FitOptions(
            self.huber_delta, self.n_starts, self.n_bootstrap, self.seed, self.level, min_decades=self.min_decades
        )


def _runs(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per fitted source run (ok or diverged): run_id, status, precision, loss, n_params, tokens."""
    other_kinds = sorted(set(tidy["kind"]) - {"train"})
    if other_kinds:
        raise ConfigError(
            f"source: the scaling_fit kind fits the runs of a train study, but its source study has experiments "
            f"of kind {other_kinds}"
        )
    fitted = tidy[tidy["status"].isin(FITTED_STATUSES)]
    if fitted.empty:
        return pd.DataFrame(columns=["run_id", "status", *TRAIN_RUN_FIELDS, *TRAIN_RUN_METRICS])
    runs = runs_from_tidy(fitted, TRAIN_RUN_METRICS, TRAIN_RUN_FIELDS)
    for column in ("n_params", "tokens"):
        lacking = runs.loc[runs[column].isna(), "run_id"]
        if len(lacking):
            raise ConfigError(f"source experiment '{lacking.iloc[0]}' has no {TRAIN_RUN_METRICS[column]} metric")
    return runs


def run(config: ScalingFitConfig, job: Job) -> Outcome:
    tidy = collect(source_results(job, config.source_ids))
    fits = ladder_fits(_runs(tidy), config.options(), config.reference, config.iso_flop_tolerance)
    metrics = [Metric(**m) for result in fits for m in result.metrics()]
    statuses = Counter(tidy.drop_duplicates("id")["status"])
    metrics += [Metric("source_runs", float(n), "", {"status": status}) for status, n in sorted(statuses.items())]
    return Outcome(metrics=metrics)


def resources(config: ScalingFitConfig) -> JobResources:
    """One thread and 1 GB on the CPU (whatever `hardware` says): the fits are small numpy/scipy problems, the
    bootstrap takes minutes at most."""
    return JobResources(threads=1, mem_mb=1000, runtime=30, group=config.kind)


KIND = Kind(ScalingFitConfig, run, resources)
