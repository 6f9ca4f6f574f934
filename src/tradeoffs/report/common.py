"""How the report reads the tidy table, and how a product shows the runs that failed.

`select_rows` is the one way rows are read: a study's runs with given statuses, matching a filter, limited to
some metrics. Claims read through it (tradeoffs.report.claims.spec.Read) and so do products
(tradeoffs.report.reads.Rows), whose `select` fails with an error that names a missing study or metric (and
what the table has) instead of drawing an empty figure. `make_product` hands a product its reads and shows its
failed runs."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tradeoffs.errors import ConfigError
from tradeoffs.results import FAILED_STATUSES

FAILED_COLUMNS = ["id", "study", "status", "message"]
NO_SUCCESS = "no successful runs"  # the status of a row that states a study has none


class ReportError(ConfigError):
    """The results table lacks what a report product needs; the message names it and what is there."""


def studies_of(results: pd.DataFrame) -> pd.Series:
    """The study of every row (cfg.study; runs planned before studies existed count as their kind)."""
    planned = results.get("cfg.study", pd.Series(np.nan, index=results.index, dtype=object))
    planned = planned.astype(object).replace("", np.nan)
    return planned.fillna(results["kind"].astype(object)).astype(str)


def select(
    results: pd.DataFrame,
    study: str,
    statuses: tuple[str, ...] = ("ok",),
    metrics: Sequence[str] = (),
    required: bool = True,
) -> pd.DataFrame:
    """Rows of the runs of `study` with the given statuses. Raises ReportError when the table has no run of the
    study at all (unless `required` is False: then no rows), or when one of `metrics` is absent from its rows."""
    study_of = studies_of(results)
    if study not in set(study_of):
        if not required:
            return results.iloc[0:0]
        present = ", ".join(sorted(set(study_of))) or "none"
        raise ReportError(f"the results table has no runs of study '{study}'; its studies: {present}")
    runs = results[(study_of == study) & results["status"].isin(statuses)]
    missing = [metric for metric in metrics if metric not in set(runs["metric"].dropna())]
    if missing:
        have = ", ".join(sorted(set(runs["metric"].dropna()))) or "none"
        raise ReportError(
            f"study '{study}' has no metric {', '.join(map(repr, missing))} in its runs with status "
            f"{'/'.join(statuses)} ({runs['id'].nunique()} runs); their metrics: {have}"
        )
    return runs


def _matches(column: pd.Series, wanted: Any) -> pd.Series:
    """Where `column` equals `wanted` (any of it, for a list), numbers compared as numbers and anything
    else as text, so that 1 matches 1.0 and true matches True."""
    options = wanted if isinstance(wanted, list | tuple) else [wanted]
    hit = pd.Series(False, index=column.index)
    numbers = pd.to_numeric(column, errors="coerce")
    for option in options:
        if isinstance(option, bool) or not isinstance(option, int | float):
            hit |= column.astype(str).str.lower() == str(option).lower()
        else:
            hit |= numbers == option
    return hit


def select_rows(
    results: pd.DataFrame,
    study: str,
    metrics: Sequence[str] = (),
    where: Mapping[str, Any] | None = None,
    statuses: Sequence[str] = ("ok",),
    requires: Sequence[str] = (),
    required: bool = False,
) -> pd.DataFrame:
    """Rows of the runs of `study` with one of `statuses` whose columns match `where`, limited to the rows
    of `metrics` when given. A `where` column missing from the table matches nothing. With `required` a study
    without runs raises ReportError, as does one whose runs lack a metric of `requires` (see `select`)."""
    rows = select(results, study, tuple(statuses), requires, required=required)
    for column, wanted in (where or {}).items():
        if column not in rows:
            return rows.iloc[0:0]
        rows = rows[_matches(rows[column], wanted)]
    if metrics:
        rows = rows[rows["metric"].isin(list(metrics))]
    return rows


def failed_runs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per failed run (status error or invalid) of the table: its id, study, status and message."""
    failed = results[results["status"].isin(FAILED_STATUSES)]
    return failed.assign(study=studies_of(failed)).drop_duplicates("id")[FAILED_COLUMNS].reset_index(drop=True)


def _failure_lines(failed: pd.DataFrame, width: int = 150) -> list[str]:
    return [textwrap.shorten(f"{r.id}: {r.status}: {r.message}", width) for r in failed.itertuples()]


def _note_failures(figure: Any, failed: pd.DataFrame) -> Any:
    """The failed runs (and the statements of studies left out) listed under everything the figure already draws
    (legends below the axes included)."""
    statements = failed.loc[failed["status"] == NO_SUCCESS, "message"]
    runs = failed[failed["status"] != NO_SUCCESS]
    lines = [line for statement in statements for line in textwrap.wrap(f"not drawn: {statement}", 150)]
    if len(runs):
        lines += [f"{len(runs)} failed run(s), not drawn:", *_failure_lines(runs)]
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # inches
    below = min(drawn.y0 / figure.get_figheight(), 0.0) - 0.01
    figure.text(0.0, below, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=7, color="firebrick")
    return figure


def _append_failures(frame: pd.DataFrame, failed: pd.DataFrame) -> pd.DataFrame:
    """`frame` with one more row per failed run, indexed by its id, holding its status and message."""
    pad = ("",) * (frame.index.nlevels - 1)
    index = pd.MultiIndex.from_tuples([(i, *pad) for i in failed["id"]]) if pad else pd.Index(failed["id"])
    column = (lambda name: (name,) + ("",) * (frame.columns.nlevels - 1)) if frame.columns.nlevels > 1 else str
    rows = pd.DataFrame({column(key): failed[key].to_numpy() for key in ("status", "message")}, index=index)
    rows.index.names = frame.index.names
    return pd.concat([frame, rows])


def no_successful_runs(results: pd.DataFrame, study: str, reasons: int = 3) -> str:
    """The statement for a study of `results` without an `ok` run: how many runs it has, none successful, and
    the first `reasons` distinct statuses and messages."""
    runs = results[studies_of(results) == study].drop_duplicates("id")
    messages = runs["message"].astype(object).where(runs["message"].notna(), "").astype(str)
    pairs = zip(runs["status"], messages, strict=True)
    distinct = list(dict.fromkeys(f"{status}: {message}".strip() for status, message in pairs))
    shown = [textwrap.shorten(reason, 160) for reason in distinct[:reasons]]
    more = f" | and {len(distinct) - reasons} other reason(s)" if len(distinct) > reasons else ""
    return f"no successful runs of study '{study}' ({len(runs)} failed: first reasons: {' | '.join(shown)}{more})"


def without_success(results: pd.DataFrame, studies: Sequence[str]) -> list[str]:
    """The studies of `studies` that have no run with status `ok` in `results` (absent ones included)."""
    successful = set(studies_of(results[results["status"] == "ok"]))
    return [study for study in studies if study not in successful]


def _unsuccessful_runs(results: pd.DataFrame, studies: Sequence[str]) -> pd.DataFrame:
    """One row per run of `studies` (none of them successful): its id, study, status and message."""
    runs = results.assign(study=studies_of(results))
    return runs[runs["study"].isin(studies)].drop_duplicates("id")[FAILED_COLUMNS].reset_index(drop=True)


def unsuccessful_figure(results: pd.DataFrame, studies: Sequence[str], runs_shown: int = 25) -> Any:
    """A figure in place of a plot whose `studies` have no successful run: the statement for each, then about
    `runs_shown` of their runs (the first of each study) with status and message."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _unsuccessful_runs(results, studies)
    statements = [line for s in studies for line in textwrap.wrap(no_successful_runs(results, s), 150)]
    lines = [f"No figure: {statement}" if i == 0 else statement for i, statement in enumerate(statements)]
    shown = runs.groupby("study", sort=False).head(max(1, runs_shown // len(studies)))  # each study's first runs
    lines += ["", *_failure_lines(shown)]
    if len(runs) > len(shown):
        lines.append(f"... and {len(runs) - len(shown)} more run(s)")
    figure = plt.figure(figsize=(10, 0.6 + 0.2 * len(lines)))
    figure.text(0.01, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
    return figure


def unsuccessful_table(results: pd.DataFrame, studies: Sequence[str]) -> pd.DataFrame:
    """A table in place of one whose `studies` have no successful run: per study a row (indexed by the study)
    whose status is "no successful runs" and whose message is the statement, then a row per run (by its id)."""
    return pd.concat([_statements(results, studies), _unsuccessful_runs(results, studies)]).set_index("id")


def _statements(results: pd.DataFrame, studies: Sequence[str]) -> pd.DataFrame:
    """Per study of `studies` (none successful) a row: id and study the study's name, status "no successful
    runs", message the statement."""
    return pd.DataFrame(
        {
            "id": list(studies),
            "study": list(studies),
            "status": NO_SUCCESS,
            "message": [no_successful_runs(results, study) for study in studies],
        },
        columns=FAILED_COLUMNS,
    )


class Makeable(Protocol):
    """What make_product needs of a product (tradeoffs.report.Product): its required and optional studies, and
    the figure or table it makes from a tidy table."""

    @property
    def studies(self) -> tuple[str, ...]: ...

    @property
    def optional(self) -> tuple[str, ...]: ...

    def make(self, results: pd.DataFrame) -> Any: ...


def make_product(product: Makeable, results: pd.DataFrame, kind: str) -> Any:
    """A figure or table (`kind`) made by `product` from `results`, with its failed runs shown as failed: a note
    under a figure, a row per run in a table. When one of its studies has no successful (`ok`) run, nothing can
    be drawn from it: the product is the statement "no successful runs of study ..." with its runs. An optional
    study that ran without a successful run is left out of what the product reads, and shown as its statement
    beside the failed runs."""
    if hopeless := without_success(results, product.studies):
        return unsuccessful_figure(results, hopeless) if kind == "figure" else unsuccessful_table(results, hopeless)
    failed = failed_runs(results)
    ran = set(studies_of(results))
    if absent := [study for study in without_success(results, product.optional) if study in ran]:
        failed = pd.concat([_statements(results, absent), failed], ignore_index=True)
        results = results[~studies_of(results).isin(absent)]
    made = product.make(results)
    if failed.empty:
        return made
    return _note_failures(made, failed) if kind == "figure" else _append_failures(made, failed)
