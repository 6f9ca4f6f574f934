"""The distributed kind: data-parallel training in real processes under a memory strategy (DDP, ZeRO stages
1-3) or a communication strategy (Adam, 1-bit Adam), tradeoffs.train.data_parallel. Records per process the
model-state bytes it holds beside ZeRO's formula, its peak RSS, the loss curve and, for the strategies whose
collectives the project counts, the bytes sent per step and in total."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from tradeoffs.bench.hardware import check_device
from tradeoffs.errors import Unsupported
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.resources import JobResources, gpus
from tradeoffs.results import Metric, Outcome
from tradeoffs.train.data_parallel import (
    DataParallelConfig,
    DataParallelResult,
    ideal_compressed_step_bytes,
    run_data_parallel,
)
from tradeoffs.train.zero import STAGES, formula_bytes

# Memory a CPU process needs besides the model: the interpreter and torch's libraries, about 120 MB of RSS each
# (measured: a forked process grows by 120 MB training gpt-60k), so 4 x that per process is asked for.
PROCESS_MB = 500
_MEMINFO = Path("/proc/meminfo")


@dataclass
class DistributedConfig(DataParallelConfig, ExperimentConfig):
    """The distributed kind's schema: a data-parallel run (tradeoffs.train.data_parallel.DataParallelConfig)
    planned as an experiment."""

    kind: str = "distributed"


def _available_mb() -> float | None:
    if not _MEMINFO.is_file():
        return None
    for line in _MEMINFO.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return None


def check_runnable(config: DistributedConfig) -> None:
    """Raise Unsupported, before any process starts, when this machine cannot run the config: a process group
    backend missing, fewer GPUs than processes, too little memory for the processes, or no FSDP2 for zero3."""
    import torch.distributed as dist

    check_device(config.hardware)
    if config.hardware.device == "cuda":
        if torch.cuda.device_count() < config.processes:
            raise Unsupported(
                f"processes={config.processes}: this machine has {torch.cuda.device_count()} GPU(s), one per process"
            )
    elif not dist.is_gloo_available():
        raise Unsupported("this torch build has no gloo backend for CPU process groups")
    available = _available_mb()
    if available is not None and config.processes * PROCESS_MB > available:
        raise Unsupported(
            f"processes={config.processes}: {config.processes} x {PROCESS_MB} MB exceeds the {available:.0f} MB "
            "of memory available"
        )
    if config.strategy == "zero3":
        try:
            from torch.distributed.fsdp import fully_shard  # noqa: F401
        except ImportError as error:
            raise Unsupported(f"strategy=zero3 needs torch.distributed.fsdp.fully_shard (FSDP2): {error}") from error


def formula(config: DataParallelConfig, parameters: int) -> float:
    """ZeRO's model-state bytes per process for the run's strategy (fp32 Adam: 4 + 4 + 8 bytes per parameter);
    Adam and 1-bit Adam hold DDP's states plus 1-bit Adam's error buffers (worker: 4 Psi, server: 4 Psi / N)."""
    if config.strategy in STAGES:
        return formula_bytes(config.strategy, parameters, config.processes).total
    return formula_bytes("ddp", parameters, config.processes).total + 4 * parameters * (1 + 1 / config.processes)


def memory_metrics(config: DataParallelConfig, result: DataParallelResult) -> list[Metric]:
    """Per-process model-state bytes and peak RSS, their mean and largest, and the formula beside them."""
    metrics, totals = [], []
    for rank in result.ranks:
        labels = {"rank": rank["rank"]}
        total = rank["parameter_bytes"] + rank["gradient_bytes"] + rank["state_bytes"]
        totals.append(total)
        metrics += [
            Metric("parameter_bytes", rank["parameter_bytes"], "byte", labels),
            Metric("gradient_bytes", rank["gradient_bytes"], "byte", labels),
            Metric("optimizer_state_bytes", rank["state_bytes"], "byte", labels),
            Metric("model_state_bytes", total, "byte", labels),
            Metric("peak_rss", rank["rss_peak_bytes"] / 2**20, "MiB", labels),
            Metric("rss_growth", rank["rss_growth_bytes"] / 2**20, "MiB", labels),
        ]
        if "cuda_peak_bytes" in rank:
            metrics.append(Metric("cuda_peak_memory", rank["cuda_peak_bytes"] / 2**20, "MiB", labels))
    predicted = formula(config, result.parameters)
    mean, largest = statistics.fmean(totals), max(totals)
    return [
        *metrics,
        Metric("parameters", result.parameters, "", {"rule": "Psi: every parameter of the model"}),
        Metric("model_state_bytes_mean", mean, "byte"),
        Metric("model_state_bytes_max", largest, "byte"),
        Metric("model_state_formula_bytes", predicted, "byte", {"rule": "ZeRO, fp32 Adam: p=4, g=4, K=8"}),
        Metric("model_state_vs_formula", mean / predicted, "", {"of": "mean over processes"}),
        Metric("model_state_max_vs_formula", largest / predicted, "", {"of": "largest process"}),
        Metric("peak_rss_max", max(r["rss_peak_bytes"] for r in result.ranks) / 2**20, "MiB"),
        Metric("rss_growth_max", max(r["rss_growth_bytes"] for r in result.ranks) / 2**20, "MiB"),
    ]


def communication_metrics(config: DataParallelConfig, result: DataParallelResult) -> list[Metric]:
    """Bytes sent per step (mean over processes) and in total; for 1-bit Adam the warm-up and compression
    steps' bytes, their ratio and the formula's."""
    if not result.bytes_sent:
        return []
    per_step = [statistics.fmean(values) for values in zip(*result.bytes_sent, strict=True)]
    metrics = [Metric("bytes_sent", sent, "byte", {"step": step}) for step, sent in enumerate(per_step)]
    metrics.append(Metric("total_bytes_sent", sum(per_step), "byte"))
    if config.strategy == "onebit_adam" and config.warmup_steps < config.steps:
        warmup, compressed = per_step[0], statistics.fmean(per_step[config.warmup_steps :])
        ideal = ideal_compressed_step_bytes(result.parameters, config.processes)
        share = config.warmup_steps / config.steps
        metrics += [
            Metric("warmup_step_bytes", warmup, "byte"),
            Metric("compressed_step_bytes", compressed, "byte"),
            Metric("compressed_step_formula_bytes", ideal, "byte", {"rule": "2(N-1)/N n/8 + 8(N-1)"}),
            Metric("compressed_step_ratio", warmup / compressed if compressed else float("nan"), ""),
            Metric(
                "predicted_end_to_end_ratio",
                1 / (share + (1 - share) * compressed / warmup) if compressed else float("nan"),
                "",
                {"rule": "1 / (f + (1 - f) / r), f the warm-up share, r the per-step ratio"},
            ),
        ]
    return metrics


def run(config: DistributedConfig, job: Job) -> Outcome:
    check_runnable(config)
    result = run_data_parallel(config, job.out_dir)
    curve = [Metric("train_loss", loss, "nats", {"step": step}) for step, loss in enumerate(result.train_loss)]
    return Outcome(
        metrics=[
            *curve,
            Metric("final_train_loss", result.train_loss[-1], "nats"),
            Metric("final_val_loss", result.val_loss, "nats"),
            *memory_metrics(config, result),
            *communication_metrics(config, result),
        ],
        timings={"train_s": result.train_seconds},
    )


def distributed_resources(config: DistributedConfig) -> JobResources:
    """A thread per process (the processes run at once), PROCESS_MB per process, 10 minutes on the CPU (the quick
    suite's runs take seconds) and 30 on GPUs (NCCL start-up and the GPU suite's 2000-step runs); never grouped
    (a job runs its processes side by side)."""
    return JobResources(
        threads=int(config.hardware.threads or config.processes),
        mem_mb=PROCESS_MB * config.processes + 1000,
        runtime=30 if config.hardware.device == "cuda" else 10,
        gpus=gpus(config) * config.processes,
        group=None,
    )


KIND = Kind(DistributedConfig, run, distributed_resources)
