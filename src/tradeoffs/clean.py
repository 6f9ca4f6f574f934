"""Retrying runs: remove the results of a suite's experiments that ended with given statuses, and the tidy table.

Snakemake does not recreate a missing input of an output that is up to date (deleting `results/<id>/` alone
leaves `results/results.parquet` current: "Nothing to be done"). Removing the table too makes collect, and so
the missing experiments before it, run again; finished results of other experiments are kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.paths import project_root
from tradeoffs.results import STATUSES, UnreadableResult, read_result

TABLES = ("results/results.parquet", "results/results.csv")


def _status(path: Path) -> str | None:
    """The status of a result file: None when missing, 'error' when it cannot be read (collect's error row)."""
    if not path.is_file():
        return None
    try:
        return read_result(path).status
    except UnreadableResult:
        return "error"


def clean(suite: str, statuses: Sequence[str]) -> list[Path]:
    """Remove the result directories of `suite`'s planned experiments whose status is one of `statuses`, and
    the tidy table when any was removed; returns what was removed."""
    from tradeoffs.plan import load_plan

    if not statuses:
        raise ConfigError(f"--status: give at least one; valid choices: {', '.join(STATUSES)}")
    for status in statuses:
        check_choice("--status", status, STATUSES)
    root = project_root()
    removed = []
    for experiment in load_plan(suite).experiments:
        result = root / experiment.result_path
        if _status(result) in statuses:
            shutil.rmtree(result.parent)
            removed.append(result.parent)
    if removed:
        for table in (root / name for name in TABLES):
            if table.exists():
                table.unlink()
                removed.append(table)
    return removed
