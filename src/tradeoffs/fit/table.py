"""Tables of runs for the fits: the documented columns of each law, a CSV reader that names a bad column and
the valid ones, and `runs_from_tidy`, which turns the tidy results table (one row per run and metric) into
one row per run with those columns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.fit.divergence import divergence_rate
from tradeoffs.fit.isoflop import ISO_FLOP_TOLERANCE, fit_iso_flop
from tradeoffs.fit.laws import fit_chinchilla, fit_quartet
from tradeoffs.fit.power import power_law
from tradeoffs.fit.qat import best_qat_fraction
from tradeoffs.fit.result import FitResult
from tradeoffs.fit.robust import FitOptions

OPTIONAL_COLUMNS = ("run_id", "seed")


@dataclass(frozen=True)
class LawSpec:
    """A fit the command line offers: its required columns (numeric unless listed in `text`) and how it
    is called on a table of runs."""

    name: str
    columns: tuple[str, ...]
    description: str
    call: Callable[[pd.DataFrame, tuple[str, ...], FitOptions, Mapping[str, Any]], FitResult]
    text: tuple[str, ...] = ()


def _settings(frame: pd.DataFrame, keys: Sequence[str]) -> list[dict[str, Any]] | None:
    return frame[list(keys)].to_dict("records") if keys else None


LAWS = {
    spec.name: spec
    for spec in (
        LawSpec(
            "chinchilla",
            ("n_params", "tokens", "loss"),
            "L = E + A/N^alpha + B/D^beta",
            lambda f, ids, o, _: fit_chinchilla(f["n_params"], f["tokens"], f["loss"], ids, o),
        ),
        LawSpec(
            "quartet",
            ("n_params", "tokens", "loss", "precision"),
            "L = (A/(N effN)^alpha + B/(D effD)^beta)^gamma + E; shared parameters on the reference precision",
            lambda f, ids, o, kw: fit_quartet(
                f["n_params"], f["tokens"], f["loss"], f["precision"], kw["reference"], ids, o
            ),
            text=("precision",),
        ),
        LawSpec(
            "iso_flop",
            ("n_params", "tokens", "loss"),
            "Chinchilla's Approach 2: a parabola of loss in log N per iso-FLOP group (C = 6ND), N_opt ~ C^a",
            lambda f, ids, o, kw: fit_iso_flop(f["n_params"], f["tokens"], f["loss"], ids, o, kw["tolerance"]),
        ),
        LawSpec(
            "qat_fraction",
            ("fraction", "bits", "budget", "loss"),
            "the QAT fraction of a budget with the lowest loss, per (bits, budget)",
            lambda f, ids, o, _: best_qat_fraction(f["fraction"], f["loss"], _settings(f, ("bits", "budget")), ids, o),
        ),
        LawSpec(
            "divergence",
            ("bits", "diverged"),
            "divergence rate per bit width (Wilson interval) and its trend against bits",
            lambda f, ids, o, _: divergence_rate(f["bits"], f["diverged"], None, ids, o.level),
        ),
        LawSpec(
            "power_law",
            ("scale", "value"),
            "value = prefactor * scale^exponent (log-log least squares)",
            lambda f, ids, o, _: power_law(f["scale"], f["value"], ids, None, o.level),
        ),
    )
}


def law_help() -> str:
    """One line per law: its name, form and columns."""
    return "\n".join(f"  {s.name:13s} {', '.join(s.columns)}: {s.description}" for s in LAWS.values())


def read_runs(path: Path | str) -> pd.DataFrame:
    """A CSV of runs, one row per run."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"RUNS: no such file {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ConfigError(f"RUNS: {path} is not a readable CSV table ({error})") from error


def _checked(frame: pd.DataFrame, spec: LawSpec, group_by: Sequence[str]) -> pd.DataFrame:
    """The frame with every column the law needs, numeric where it must be; errors name the column."""
    wanted = (*spec.columns, *group_by)
    for column in wanted:
        if column not in frame.columns:
            raise ConfigError(
                f"column {column!r}: missing from the runs table, which law {spec.name} needs "
                f"(required: {', '.join(spec.columns)}; optional: {', '.join(OPTIONAL_COLUMNS)}); "
                f"found: {', '.join(map(str, frame.columns))}"
            )
    frame = frame.copy()
    for column in spec.columns:
        if column in spec.text:
            frame[column] = frame[column].astype(str)
            continue
        values = frame[column].map(lambda v: {"true": 1, "false": 0}.get(str(v).strip().lower(), v))
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna() & values.notna() & ~values.astype(str).str.strip().str.lower().isin(("nan", ""))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ConfigError(f"column {column!r}: row {row} is {values.iloc[row]!r}, not a number")
        frame[column] = numeric.astype(float)
    return frame


def fit_table(
    law: str,
    frame: pd.DataFrame,
    options: FitOptions | None = None,
    group_by: Sequence[str] = (),
    reference: str | Sequence[str] = "fp32",
    tolerance: float = ISO_FLOP_TOLERANCE,
) -> list[FitResult]:
    """Fit `law` to a table of runs (columns of LAWS[law], optional run_id), once per distinct value of the
    `group_by` columns (e.g. a Chinchilla fit per precision); each result's estimates carry the group.
    `reference` is Quartet's full precision, `tolerance` the iso-FLOP groups' factor of compute."""
    check_choice("LAW", law, LAWS)
    spec = LAWS[law]
    frame = _checked(frame, spec, group_by)
    options = options or FitOptions()
    groups = frame.groupby(list(group_by), sort=False, dropna=False) if group_by else [((), frame)]
    results = []
    for key, part in groups:
        ids = part["run_id"].astype(str).tolist() if "run_id" in part else [f"row{i}" for i in part.index]
        result = spec.call(part.reset_index(drop=True), ids, options, {"reference": reference, "tolerance": tolerance})
        if group_by:
            labels = dict(zip(group_by, key if isinstance(key, tuple) else (key,), strict=True))
            result = _with_labels(result, labels)
        results.append(result)
    return results


def _with_labels(result: FitResult, labels: Mapping[str, Any]) -> FitResult:
    estimates = tuple(replace(e, labels={**labels, **e.labels}) for e in result.estimates)
    return replace(result, estimates=estimates, labels={**labels, **result.labels})


def runs_from_tidy(
    tidy: pd.DataFrame, metrics: Mapping[str, str], fields: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per run of the tidy table: `metrics` maps output column -> metric name (unlabelled final
    values, e.g. {"loss": "final_val_loss"}), `fields` maps output column -> a tidy column (e.g.
    {"precision": "cfg.recipe.name"}). A run missing a metric (a diverged run) gets nan there; run_id and
    status come along."""
    fields = dict(fields or {})
    for column in ("id", "metric", "value", "status", *fields.values()):
        if column not in tidy.columns:
            raise ConfigError(f"column {column!r}: missing from the tidy table")
    runs = tidy.groupby("id", sort=False)[["status", *fields.values()]].first()
    runs = runs.rename(columns={v: k for k, v in fields.items()})
    chosen = tidy[tidy["metric"].isin(list(metrics.values()))]
    values = chosen.groupby(["id", "metric"])["value"].first().unstack()
    for column, metric in metrics.items():
        runs[column] = values[metric].reindex(runs.index) if metric in values else np.nan
    return runs.rename_axis("run_id").reset_index()
