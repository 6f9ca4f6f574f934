"""The typed result of every fit: estimates with intervals, fit quality, the runs used, and a status that
says when a fit could not be made (too few runs, no convergence) instead of raising or returning a bad fit.

A result turns into rows of the tidy results table (docs/scaling.md): one `fit_parameter` row per estimate,
one `fit_<quality>` row per quality measure and one `fit_residual` row per run, each qualified by labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OK = "ok"
TOO_FEW_RUNS = "too_few_runs"
NOT_CONVERGED = "not_converged"
NOT_IDENTIFIED = "not_identified"
FIT_STATUSES = (OK, TOO_FEW_RUNS, NOT_CONVERGED, NOT_IDENTIFIED)


@dataclass(frozen=True)
class Estimate:
    """One fitted quantity (unrounded) with its interval at `FitResult.level`; labels say which group it
    belongs to (a precision, a QAT setting, a bit width). An estimate that could not be made has value nan
    and its own status and reason. `identified` (None where a fit does not judge it) says whether the runs
    identify it, `identification` why not (tradeoffs.fit.identify)."""

    name: str
    value: float
    low: float = math.nan
    high: float = math.nan
    labels: Mapping[str, Any] = field(default_factory=dict)
    status: str = OK
    reason: str = ""
    identified: bool | None = None
    identification: str = ""

    def identification_labels(self) -> dict[str, Any]:
        """The labels `identified` and `identification` where the fit judged them, else none."""
        if self.identified is None:
            return {}
        return {"identified": self.identified, "identification": self.identification or self.reason}

    def contains(self, value: float) -> bool:
        """Whether `value` lies inside the interval (closed)."""
        return self.low <= value <= self.high


@dataclass(frozen=True)
class FitResult:
    """What a fit returns. `status` is ok, too_few_runs or not_converged (with `reason`); `estimates` are
    kept unrounded; `quality` holds R^2, residual spread, bootstrap counts and the like; `residuals` are
    log(observed) - log(predicted) per run id (or plain differences where a fit is not in log space);
    `labels` name the group the whole fit belongs to (e.g. its precision) and qualify every row of it."""

    fit: str
    status: str
    reason: str = ""
    estimates: tuple[Estimate, ...] = ()
    quality: Mapping[str, float] = field(default_factory=dict)
    residuals: Mapping[str, float] = field(default_factory=dict)
    run_ids: tuple[str, ...] = ()
    level: float = 0.95
    seed: int | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in FIT_STATUSES:
            raise ValueError(f"fit status {self.status!r} is not one of {FIT_STATUSES}")

    @property
    def ok(self) -> bool:
        return self.status == OK

    def estimate(self, name: str, **labels: Any) -> Estimate:
        """The estimate called `name` whose labels include `labels` (exactly one must match)."""
        found = [e for e in self.estimates if e.name == name and all(e.labels.get(k) == v for k, v in labels.items())]
        if len(found) != 1:
            available = sorted({(e.name, tuple(sorted(e.labels.items()))) for e in self.estimates}, key=str)
            raise KeyError(f"{len(found)} estimates match {name!r} {labels}; available: {available}")
        return found[0]

    def value(self, name: str, **labels: Any) -> float:
        return self.estimate(name, **labels).value

    def metrics(self) -> list[dict[str, Any]]:
        """The result as metric records {name, value, unit, labels} (the fields of tradeoffs.results.Metric,
        so a kind can record a fit with `[Metric(**m) for m in result.metrics()]`)."""
        common = {"fit": self.fit, "fit_status": self.status, "fit_reason": self.reason, **self.labels}
        runs = {"n_runs": len(self.run_ids), "run_ids": json.dumps(list(self.run_ids))}
        records = [
            {
                "name": "fit_parameter",
                "value": e.value,
                "unit": "",
                "labels": {
                    **common,
                    "parameter": e.name,
                    **dict(e.labels),
                    "interval_low": e.low,
                    "interval_high": e.high,
                    "interval_level": self.level,
                    "estimate_status": e.status,
                    "estimate_reason": e.reason,
                    **e.identification_labels(),
                    **runs,
                },
            }
            for e in self.estimates
        ]
        records += [
            {"name": f"fit_{key}", "value": float(value), "unit": "", "labels": {**common, **runs}}
            for key, value in self.quality.items()
        ]
        records += [
            {"name": "fit_residual", "value": value, "unit": "", "labels": {**common, "run_id": run_id}}
            for run_id, value in self.residuals.items()
        ]
        return records

    def rows(self) -> list[dict[str, Any]]:
        """The result as rows in the tidy table's column convention: metric, value, unit, label.<name>."""
        return [
            {
                "metric": m["name"],
                "value": m["value"],
                "unit": m["unit"],
                **{f"label.{k}": v for k, v in m["labels"].items()},
            }
            for m in self.metrics()
        ]


def cannot_fit(fit: str, status: str, reason: str, run_ids: tuple[str, ...] = (), **kwargs: Any) -> FitResult:
    """A result that says why no fit was made."""
    return FitResult(fit=fit, status=status, reason=reason, run_ids=run_ids, **kwargs)
