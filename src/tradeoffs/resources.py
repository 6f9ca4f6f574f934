"""What one experiment's job needs from a scheduler (threads, memory, wall time, GPUs, group), derived from its
typed config by its kind's sizer (`Kind.resources`, beside the kind's run function), so that a SLURM job asks
for what its experiment needs and no rule restates it.

Sizing runs once, when a suite is planned; the plan keeps each experiment's JobResources, so parsing the
Snakefile (which Snakemake repeats inside every cluster job) imports neither torch nor Hydra. The rules read
them through workflow/rules/common.smk (`planned_threads`, `planned_group`, `planned_resources`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

# A job whose compute is estimated below this many seconds is dominated by its start-up (interpreter, torch,
# Snakemake; about 5 s): it joins its kind's group so a cluster job runs many of them (group-components).
GROUP_BELOW_S = 10.0


@dataclass(frozen=True)
class JobResources:
    """Resources of one job: Snakemake threads, mem_mb, runtime (wall-time limit, minutes), gpus, and the
    Snakemake group it may share a cluster job with (None: always a job of its own)."""

    threads: int = 1
    mem_mb: int = 2000
    runtime: int = 30
    gpus: int = 0
    group: str | None = None

    def for_attempt(self, attempt: int) -> JobResources:
        """Memory and wall time grow with each retry, so a job killed for either gets more the next time."""
        return replace(self, mem_mb=self.mem_mb * attempt, runtime=self.runtime * attempt)


def gpus(config: Any) -> int:
    """GPUs an experiment needs: one on a CUDA device, none on the CPU."""
    return 1 if config.hardware.device == "cuda" else 0


def threads(config: Any, default: int = 1) -> int:
    """CPU threads: hardware.threads when set, else the kind's default."""
    return int(config.hardware.threads or default)


def round_up(value: float, step: int) -> int:
    """`value` rounded up to a multiple of `step` (memory requests in whole steps)."""
    return int(math.ceil(value / step) * step)


def default_resources(config: Any) -> JobResources:
    """A small single-threaded job of 2000 MB and 30 minutes, grouped with its kind's other small jobs; a GPU job
    is never grouped (grouped jobs add up their GPUs)."""
    need_gpus = gpus(config)
    return JobResources(threads=threads(config), gpus=need_gpus, group=None if need_gpus else config.kind)
