"""Run one experiment: seed, time, call its kind, catch every outcome, write result.json atomically.

A failure inside the experiment is a result with status error (and the traceback in the log), never a
crash that loses the record; a result.json is only written once the run has ended.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from tradeoffs.config import as_dict
from tradeoffs.errors import Diverged, InvalidResult, Unsupported
from tradeoffs.kinds import get_kind
from tradeoffs.kinds.base import ExperimentConfig, Job
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
    the experiments it reads, as planned."""
    out_dir = result_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_threads(config, job_threads)
    seed_everything(config.seed)
    started, clock = _now(), time.perf_counter()
    try:
        outcome = get_kind(config.kind).run(config, Job(out_dir, tuple(inputs)))
    except Unsupported as reason:
        outcome = Outcome(status="unsupported", message=str(reason))
    except Diverged as reason:
        outcome = Outcome(status="diverged", message=f"{reason} (step {reason.step})", metrics=reason.metrics)
    except InvalidResult as reason:
        outcome = Outcome(status="invalid", message=str(reason))
    except Exception as error:  # recorded, not raised: one failed run must not stop a suite
        log.error("experiment %s failed:\n%s", experiment_id, traceback.format_exc())
        outcome = Outcome(status="error", message=f"{type(error).__name__}: {error}")
    wall = time.perf_counter() - clock
    record = ResultRecord(
        id=experiment_id,
        kind=config.kind,
        status=outcome.status,
        message=outcome.message,
        config=as_dict(config),
        metrics=outcome.metrics,
        timings={"wall_s": wall, **outcome.timings},
        provenance=collect_provenance(),
        seed=config.seed,
        started=started,
        ended=_now(),
        artifacts=outcome.artifacts,
    )
    write_result(result_path, record)
    return record
