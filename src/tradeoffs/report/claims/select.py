"""Row selection of the claims: the one place that turns a read (study, metric, filter) into table rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tradeoffs.report.common import select, studies_of


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
) -> pd.DataFrame:
    """Rows of the runs of `study` with one of `statuses` whose columns match `where`, limited to the rows
    of `metrics` when given. A `where` column missing from the table matches nothing."""
    rows = select(results, study, tuple(statuses), required=False)
    for column, wanted in (where or {}).items():
        if column not in rows:
            return rows.iloc[0:0]
        rows = rows[_matches(rows[column], wanted)]
    if metrics:
        rows = rows[rows["metric"].isin(list(metrics))]
    return rows


def studies_present(results: pd.DataFrame) -> set[str]:
    """The studies with at least one run in the table (whatever its status)."""
    return set(studies_of(results).dropna()) if len(results) else set()
