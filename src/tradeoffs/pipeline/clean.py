"""Retrying runs: remove the results of a suite's experiments that ended with given statuses, and the tidy table.

Snakemake does not recreate a missing input of an output that is up to date (deleting `results/<id>/` alone
leaves `results/results.parquet` current: "Nothing to be done"). Removing the table too makes collect, and so
the missing experiments before it, run again; finished results of other experiments are kept. An error row
recorded in results/failed/<id>/ in place of a result that could not be written goes the same way.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.paths import project_root
from tradeoffs.pipeline.failures import recorded_failure
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


def _located(result: Path) -> tuple[Path, str | None]:
    """A planned result file, or the error row recorded in its place (results/failed/, tradeoffs.pipeline.failures), and
    its status."""
    path = recorded_failure(result) or result
    return path, _status(path)


def clean(suite: str, statuses: Sequence[str], dry_run: bool = False, remove_ok: bool = False) -> list[Path]:
    """Remove the result directories of `suite`'s planned experiments whose status is one of `statuses`, and
    the tidy table when any was removed; returns what was removed, or with `dry_run` what would be (removing
    nothing). Finished (`ok`) results are removed only with `remove_ok` (the command line's --yes): without it,
    ConfigError says how many would go, before anything is removed."""
    from tradeoffs.pipeline.plan import load_plan

    if not statuses:
        raise ConfigError(f"--status: give at least one; valid choices: {', '.join(STATUSES)}")
    for status in statuses:
        check_choice("--status", status, STATUSES)
    root = project_root()
    found = [_located(root / e.result_path) for e in load_plan(suite).experiments]
    doomed = [result.parent for result, status in found if status in statuses]
    finished = sum(status == "ok" for _, status in found) if "ok" in statuses else 0
    if finished and not dry_run and not remove_ok:
        raise ConfigError(
            f"--status ok: would delete {finished} finished (ok) result(s) of suite '{suite}', which took real "
            "compute to make; give --yes to delete them, or --dry-run to list them first"
        )
    if doomed:
        doomed += [table for table in (root / name for name in TABLES) if table.exists()]
    if not dry_run:
        for path in doomed:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return doomed
