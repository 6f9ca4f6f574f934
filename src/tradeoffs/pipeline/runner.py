"""Run one experiment: seed, time, call its kind, catch every outcome, write result.json atomically.

A failure inside the experiment is a result with status error (and the traceback in the log), never a
crash that loses the record; a result.json is only written once the run has ended. A run that cannot create
its folder or write its result there (read-only, a full disk) leaves its error row in results/failed/<id>/
(tradeoffs.pipeline.failures) and raises FileWriteError naming both places.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from tradeoffs.atomic import FileWriteError, named_write_error
from tradeoffs.errors import Diverged, InvalidResult, Unsupported
from tradeoffs.identity import plain
from tradeoffs.kinds import get_kind
from tradeoffs.kinds.base import ExperimentConfig, Job
from tradeoffs.pipeline.failures import discard_failure, record_failure
from tradeoffs.provenance import collect_provenance
from tradeoffs.results import Outcome, ResultRecord, write_result

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is bit-identical for the same config."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(config: ExperimentConfig, job_threads: int | None) -> None:
    """Fix torch's intra-op threads: the hardware config's count, else the job's allotment."""
    threads = config.hardware.threads or job_threads
    if threads:
        torch.set_num_threads(threads)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_experiment(
    experiment_id: str,
    config: ExperimentConfig,
    result_path: Path,
    job_threads: int | None = None,
    inputs: tuple[Path, ...] = (),
) -> ResultRecord:
    """Run `config` and write its ResultRecord to `result_path` (also returned); `inputs` are the result files of
    the experiments it reads, as planned. FileWriteError when the result cannot be written there (see the
    module docstring)."""
    out_dir = result_path.parent
    configure_threads(config, job_threads)
    seed_everything(config.seed)
    started, clock = _now(), time.perf_counter()
    unwritable = _create_folder(out_dir)
    if unwritable is None:
        outcome = _run_kind(experiment_id, config, Job(out_dir, tuple(inputs)))
    else:
        outcome = Outcome(status="error", message=str(unwritable))
    wall = time.perf_counter() - clock
    record = ResultRecord(
        id=experiment_id,
        kind=config.kind,
        status=outcome.status,
        message=outcome.message,
        config=plain(config),
        metrics=outcome.metrics,
        timings={"wall_s": wall, **outcome.timings},
        provenance=collect_provenance(),
        seed=config.seed,
        started=started,
        ended=_now(),
        artifacts=outcome.artifacts,
    )
    try:
        if unwritable is not None:
            raise unwritable
        write_result(result_path, record)
    except FileWriteError as error:
        raise _recorded_elsewhere(result_path, record, error) from error
    discard_failure(result_path)
    return record


def _create_folder(out_dir: Path) -> FileWriteError | None:
    """None once `out_dir` exists, else the error naming it (the run then does not start)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return named_write_error(error, out_dir)
    return None


def _run_kind(experiment_id: str, config: ExperimentConfig, job: Job) -> Outcome:
    """The experiment's outcome: whatever it raised becomes a status (an unexpected error with its traceback)."""
    try:
        return get_kind(config.kind).run(config, job)
    except Unsupported as reason:
        return Outcome(status="unsupported", message=str(reason))
    except Diverged as reason:
        return Outcome(status="diverged", message=f"{reason} (step {reason.step})", metrics=reason.metrics)
    except InvalidResult as reason:
        return Outcome(status="invalid", message=str(reason))
    except Exception as error:  # recorded, not raised: one failed run must not stop a suite
        log.error("experiment %s failed:\n%s", experiment_id, traceback.format_exc())
        return Outcome(status="error", message=f"{type(error).__name__}: {error}")


def _recorded_elsewhere(result_path: Path, record: ResultRecord, error: FileWriteError) -> FileWriteError:
    """Record the run as an error row in its fallback folder; the error to raise names where it went."""
    message = str(error) if record.message == str(error) else f"{error} (the run ended {record.status})"
    if record.status != "ok" and record.message != str(error):
        message += f": {record.message}"
    failed = replace(record, status="error", message=message, metrics=[], artifacts=[])
    try:
        where = f"recorded as an error row in {record_failure(result_path, failed)}"
    except FileWriteError as second:
        where = f"its error row could not be recorded either ({second})"
    log.error("%s: %s; %s", record.id, message, where)
    return FileWriteError(error.errno, f"{message}; {where}", str(result_path))
