"""Error rows for experiments whose result cannot be written where it is planned.

A job whose folder results/<kind>/<name>/ cannot be created or written (a read-only folder, a full disk) cannot
leave its result.json there, and Snakemake, missing that file, would never run collect. Its error row goes to
results/failed/<kind>/<name>/result.json instead, with a log.txt saying why, and collect reads it in place of the
planned result:

- before a run, the workflow probes the folder of every experiment it is about to run (`collect_inputs`); one
  that cannot be written is recorded without running, and so is every experiment that reads its result;
- during a run, a job that cannot write its result records it itself (tradeoffs.pipeline.runner), and a job that failed
  otherwise is recorded by `python -m tradeoffs.pipeline.failures` (the workflow runs it after a non-zero exit) when its
  folder cannot be written then: a full disk that took its log;
- after a run with failed jobs, `finishable` says whether every experiment now has a result or a recorded
  error (and collect has not run), so that one more Snakemake pass can write the table, the report products
  and the claims (the Snakefile's `onerror`).

`tradeoffs clean --status error` removes these records with the experiments' folders, so a retry runs them again.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeoffs.atomic import FileWriteError, named_write_error, write_bytes_atomic
from tradeoffs.results import ResultRecord, UnreadableResult, read_result, write_result

if TYPE_CHECKING:
    from tradeoffs.pipeline.plan import PlannedExperiment as PlannedRun

FAILED_DIR = "failed"  # results/failed/<kind>/<name>/: error rows of runs that could not write their own folder
log = logging.getLogger(__name__)


def fallback_path(result_path: Path | str) -> Path | None:
    """Where the error row of results/<kind>/<name>/result.json goes when its folder cannot be written:
    results/failed/<kind>/<name>/result.json; None for a path outside that layout (a run by hand elsewhere)."""
    path = Path(result_path)
    if len(path.parents) < 4 or path.parents[2].name != "results" or path.parents[1].name == FAILED_DIR:
        return None
    return path.parents[2] / FAILED_DIR / path.parents[1].name / path.parent.name / path.name


def recorded_failure(result_path: Path | str) -> Path | None:
    """The error row recorded in place of a planned result that does not exist, if there is one."""
    fallback = fallback_path(result_path)
    if fallback is None or Path(result_path).is_file() or not fallback.is_file():
        return None
    return fallback


def record_failure(result_path: Path | str, record: ResultRecord) -> Path:
    """Write `record` (an error) and a log.txt with its message to the fallback folder of `result_path`; returns
    the record's path. FileWriteError naming the file when that cannot be written either."""
    fallback = fallback_path(result_path)
    if fallback is None:
        raise FileWriteError(errno.ENOENT, f"no place for the error row of {result_path} (not results/<kind>/<name>/)")
    write_result(fallback, record)
    write_bytes_atomic(fallback.with_name("log.txt"), f"{record.id}: {record.status} {record.message}\n".encode())
    return fallback


def discard_failure(result_path: Path | str) -> None:
    """Remove an error row recorded in place of `result_path` (its run has now written its own result)."""
    fallback = fallback_path(result_path)
    if fallback is not None and fallback.parent.is_dir():
        shutil.rmtree(fallback.parent, ignore_errors=True)


def probe_writable(directory: Path) -> str | None:
    """Why files cannot be written in `directory` (created if missing), e.g. "no space left on <dir>" or "cannot
    write <dir>: Read-only file system"; None when one byte can be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
        handle = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(handle, b"\0")
        finally:
            os.close(handle)
            probe.unlink()
    except OSError as error:
        return str(named_write_error(error, directory))
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _not_run(run: PlannedRun, message: str) -> ResultRecord:
    return _error_record(run.id, run.config, message)


def _error_record(experiment_id: str, config: dict[str, Any], message: str) -> ResultRecord:
    from tradeoffs.provenance import collect_provenance

    return ResultRecord(
        id=experiment_id,
        kind=config.get("kind", experiment_id.split("/")[0]),
        status="error",
        message=message,
        config=config,
        metrics=[],
        timings={},
        provenance=collect_provenance(),
        seed=config.get("seed"),
        started=_now(),
        ended=_now(),
    )


def _message(path: Path) -> str:
    try:
        return read_result(path).message
    except UnreadableResult as error:
        return str(error)


def collect_inputs(
    runs: Sequence[PlannedRun], probe: bool, create: bool = True, warn: Callable[[str], None] = log.warning
) -> list[str]:
    """What collect reads for each planned run: its result, or the error row recorded in its place. With `probe`
    (a real run, about to start), a run with neither whose folder cannot be created or written is recorded now,
    without running, and so is a run reading such a run's result; `warn` is told each, with its reason. Without
    `create`, only folders that exist are probed (after a run: those of the jobs that were started)."""
    by_result = {run.result_path: run for run in runs}
    chosen: dict[str, str] = {}

    def choose(run: PlannedRun) -> str:
        if run.result_path in chosen:
            return chosen[run.result_path]
        chosen[run.result_path] = run.result_path  # a cycle (none is planned) resolves to the planned result
        recorded = recorded_failure(run.result_path)
        if recorded is None and probe and not Path(run.result_path).is_file():
            reason = _blocked_input(run, by_result, choose)
            folder = Path(run.result_path).parent
            if reason is None and (create or folder.is_dir()) and (why := probe_writable(folder)) is not None:
                reason = f"{why} (found by the workflow: the experiment did not run)"
            if reason is not None:
                recorded = _record_or_warn(run, reason, warn)
        chosen[run.result_path] = str(recorded) if recorded is not None else run.result_path
        return chosen[run.result_path]

    return [choose(run) for run in runs]


def _blocked_input(run: PlannedRun, by_result: dict[str, PlannedRun], choose) -> str | None:
    for source in run.inputs:
        if source in by_result and choose(by_result[source]) != source:
            recorded = Path(choose(by_result[source]))
            return f"not run: its input {by_result[source].id} has no result ({_message(recorded)})"
    return None


def _record_or_warn(run: PlannedRun, reason: str, warn: Callable[[str], None]) -> Path | None:
    try:
        recorded = record_failure(run.result_path, _not_run(run, reason))
    except FileWriteError as error:
        warn(f"{run.id}: {reason}; its error row could not be recorded either: {error}")
        return None
    warn(f"{run.id}: {reason}; recorded as an error row in {recorded}")
    return recorded


def recorded_since(runs: Iterable[PlannedRun], since: float) -> list[str]:
    """One line per error row recorded in place of a planned result since `since` (a time.time()): the run's
    id, the row's message and where it is."""
    lines = []
    for run in runs:
        recorded = recorded_failure(run.result_path)
        if recorded is not None and recorded.stat().st_mtime >= since:
            lines.append(f"{run.id}: {_message(recorded)} (error row in {recorded})")
    return lines


def finishable(runs: Iterable[PlannedRun], since: float, table: Path | str) -> bool:
    """After a run with failed jobs: whether one more pass can write the tidy `table` and the report without
    running any experiment, and has a reason to: every planned run has a result or a recorded error row, some
    row was recorded since `since` (a time.time()), and collect has not written `table` since (a failed report
    product alone is no reason)."""
    runs = list(runs)
    complete = all(Path(run.result_path).is_file() or recorded_failure(run.result_path) for run in runs)
    collected = Path(table).is_file() and Path(table).stat().st_mtime >= since
    return complete and not collected and bool(recorded_since(runs, since))


def record_failed_job(experiment_id: str, result_path: Path | str, config: dict[str, Any], status: int) -> Path | None:
    """After a job of the workflow exited with `status` != 0: when its folder cannot be written now (a full disk
    took its log or its result) and it left no error row, record one naming the reason; returns where, or None."""
    fallback = fallback_path(result_path)
    if fallback is None or fallback.is_file():
        return None
    reason = probe_writable(Path(result_path).parent)
    if reason is None:
        return None
    message = f"{reason} (its job exited with status {status}: its log or result could not be written)"
    return record_failure(result_path, _error_record(experiment_id, config, message))


def main(argv: list[str] | None = None) -> None:
    """`python -m tradeoffs.pipeline.failures ID RESULT CONFIG_JSON STATUS`: record_failed_job, then exit with
    STATUS."""
    experiment_id, result_path, config, status = argv if argv is not None else sys.argv[1:]
    try:
        recorded = record_failed_job(experiment_id, result_path, json.loads(config), int(status))
    except FileWriteError as error:
        print(f"{experiment_id}: its error row could not be recorded: {error}", file=sys.stderr)
    else:
        if recorded is not None:
            print(f"{experiment_id}: {_message(recorded)}; recorded as an error row in {recorded}", file=sys.stderr)
    sys.exit(int(status))


if __name__ == "__main__":
    main()
