"""What one experiment's job needs from a scheduler (threads, memory, wall time, GPUs, group), derived from its
resolved config, so that a SLURM job asks for what its experiment needs and no rule restates it.

The Snakemake rules read these through workflow/rules/common.smk (`planned_threads`, `planned_group`,
`planned_resources`). Sizing works on the plain resolved config held by the plan (a dict), so parsing the
Snakefile, which Snakemake repeats inside every cluster job, imports neither torch nor Hydra.

A kind without a sizer in SIZERS gets `default_resources`; add one next to `numerics_resources` when a kind's
needs grow with its config (model size, batch, devices).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
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


def _hardware(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("hardware") or {}


def gpus(config: Mapping[str, Any]) -> int:
    """GPUs an experiment needs: one on a CUDA device, none on the CPU."""
    return 1 if _hardware(config).get("device") == "cuda" else 0


def threads(config: Mapping[str, Any], default: int = 1) -> int:
    """CPU threads: hardware.threads when set, else the kind's default."""
    return int(_hardware(config).get("threads") or default)


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def default_resources(kind: str, config: Mapping[str, Any]) -> JobResources:
    """A small single-threaded job; a GPU job is never grouped (grouped jobs add up their GPUs)."""
    need_gpus = gpus(config)
    return JobResources(threads=threads(config), gpus=need_gpus, group=None if need_gpus else kind)


def numerics_resources(kind: str, config: Mapping[str, Any]) -> JobResources:
    """Memory and time grow with the sample (about 100 bytes per value measured with its copies) and with a
    dense Hadamard rotation (its k x k matrix built in float64, and 2 n k flops)."""
    n_values = int(config["n_values"])
    rotation = int(config["rotation_size"]) if config.get("rotation", "none") != "none" else 0
    compute_s = n_values / 8e6 + 2 * n_values * rotation / 1e10
    mem_mb = 1000 + (100 * n_values + 24 * rotation**2) / 1e6
    need_gpus = gpus(config)
    small = compute_s < GROUP_BELOW_S and not need_gpus
    return JobResources(
        threads=threads(config),
        mem_mb=_round_up(mem_mb, 100),
        runtime=5 + math.ceil(3 * compute_s / 60),
        gpus=need_gpus,
        group=kind if small else None,
    )


def bench_resources(kind: str, config: Mapping[str, Any]) -> JobResources:
    """A benchmark has the machine to itself: every core (Snakemake caps threads at --cores) unless
    hardware.threads says otherwise, never grouped with other jobs; memory for its largest operands (fp32,
    bf16 and quantized copies and an fp64 reference: about 40 bytes per GEMM element) or for an eager
    quantize-dequantize (up to about 16 fp32 copies of its input)."""
    if config.get("benchmark") == "gemm":
        elements = max((m * k + k * n + m * n for m, k, n in config.get("shapes") or [[1, 1, 1]]), default=1)
        mem_mb = 1500 + 40 * elements / 1e6
    else:
        mem_mb = 1500 + 64 * 2 ** int(config.get("log2_elements", 22)) / 1e6
    return JobResources(
        threads=threads(config, default=os.cpu_count() or 1),
        mem_mb=_round_up(mem_mb, 100),
        runtime=15,
        gpus=gpus(config),
        group=None,
    )


def train_resources(kind: str, config: Mapping[str, Any]) -> JobResources:
    """A training run is never grouped. With `devices` > 1 it launches that many data-parallel processes
    (torchrun) inside its job: one GPU each on CUDA, at least one thread each, and memory for each (2000 MB:
    torch, the model, its gradients and AdamW states, a batch; the model ladder tops out at 30M parameters).
    An hour of wall time until runs get longer."""
    devices = int(config.get("devices", 1))
    return JobResources(
        threads=threads(config, default=devices),
        mem_mb=2000 * devices,
        runtime=60,
        gpus=gpus(config) * devices,
        group=None,
    )


SIZERS: dict[str, Callable[[str, Mapping[str, Any]], JobResources]] = {
    "numerics": numerics_resources,
    "bench": bench_resources,
    "train": train_resources,
}


def job_resources(kind: str, config: Mapping[str, Any], attempt: int = 1) -> JobResources:
    """The resources of an experiment of `kind` with resolved `config`, for its `attempt`-th try."""
    return SIZERS.get(kind, default_resources)(kind, config).for_attempt(attempt)
