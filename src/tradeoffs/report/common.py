"""The one way a report product gets its rows: `select` from the tidy table by the study it is registered under,
failing with an error that names a missing study or metric (and what the table has) instead of drawing an
empty figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tradeoffs.errors import ConfigError


class ReportError(ConfigError):
    """The results table lacks what a report product needs; the message names it and what is there."""


def studies_of(results: pd.DataFrame) -> pd.Series:
    """The study of every row (cfg.study; runs planned before studies existed count as their kind)."""
    planned = results.get("cfg.study", pd.Series(np.nan, index=results.index)).replace("", np.nan)
    return planned.fillna(results["kind"])


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
