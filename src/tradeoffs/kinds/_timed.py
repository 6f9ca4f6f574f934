"""What the four benchmark kinds (gemm, qdq, bandwidth, inference) share: the timing rules and fresh-process
repeat of their configs, a recorder of metrics, raw samples and problems, their job sizing, and the run that
wraps a benchmark's measurement: the device check, the hardware's peaks, samples.json beside result.json,
and the status (a case below its minimum count or time, recompiled while timed, or failing its accuracy
gate makes the result `invalid`, metrics kept, reasons in the message)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tradeoffs.bench.hardware import Peaks, check_device, peaks_for
from tradeoffs.bench.memory import PeakMemory
from tradeoffs.bench.timing import BenchConfig, Measurement
from tradeoffs.errors import ConfigError
from tradeoffs.kinds.base import ExperimentConfig, Job
from tradeoffs.provenance import collect_provenance
from tradeoffs.resources import JobResources, gpus, round_up, threads
from tradeoffs.results import Metric, Outcome, write_json_atomic


@dataclass
class BenchmarkConfig(ExperimentConfig):
    """Fields of every benchmark: the engine's timing rules (conf/bench/) and which fresh-process repeat this is."""

    bench: BenchConfig = field(default_factory=BenchConfig)
    repeat: int = 0  # index of this fresh-process repeat, < bench.repeats

    def __post_init__(self) -> None:
        if not 0 <= self.repeat < self.bench.repeats:
            raise ConfigError(f"repeat={self.repeat} must be in [0, bench.repeats={self.bench.repeats})")


class Recorder:
    """Collects metrics, raw samples and problems of the cases of one run."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []
        self.samples: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.notes: list[str] = []

    def add(self, name: str, value: float | None, unit: str, labels: dict[str, Any]) -> None:
        self.metrics.append(Metric(name, math.nan if value is None else float(value), unit, dict(labels)))

    def timing(self, case: str, measurement: Measurement, labels: dict[str, Any]) -> None:
        """The engine's statistics as metrics (labelled with the noise flag and stop reason) and its samples."""
        stats = measurement.stats
        timing_labels = {
            **labels,
            "noise": stats.noise,
            "stop_reason": measurement.stop_reason,
            "calls_per_sample": measurement.calls_per_sample,
            "threads": measurement.threads,
        }
        tail = {"p90": stats.p90_indicative, "p99": stats.p99_indicative}
        self.add("time_median_s", stats.median, "s", timing_labels)
        for name in ("p90", "p99"):
            self.add(f"time_{name}_s", getattr(stats, name), "s", {**timing_labels, "indicative": tail[name]})
        self.add("time_iqr_over_median", stats.iqr_over_median, "", timing_labels)
        self.add("time_cv", stats.cv, "", timing_labels)
        self.add("samples", stats.count, "", timing_labels)
        self.add("cold_start_s", measurement.cold_start_s, "s", timing_labels)
        self.samples.append({"case": case, **labels, **measurement.summary(), "samples_s": measurement.samples_s})
        self.problems.extend(f"{case}: {problem}" for problem in measurement.problems)

    def memory(self, memory: PeakMemory, labels: dict[str, Any]) -> None:
        self.add("peak_rss_growth_bytes", memory.rss_growth, "B", {**labels, "reset": memory.rss_peak_reset})
        if memory.cuda_growth is not None:
            self.add("cuda_peak_growth_bytes", memory.cuda_growth, "B", labels)


def benchmark_resources(config: BenchmarkConfig, operand_bytes: float) -> JobResources:
    """A benchmark has the machine to itself: every core (Snakemake caps threads at --cores) unless
    hardware.threads says otherwise, never grouped with other jobs, with 1500 MB beside its operands."""
    return JobResources(
        threads=threads(config, default=os.cpu_count() or 1),
        mem_mb=round_up(1500 + operand_bytes / 1e6, 100),
        runtime=15,
        gpus=gpus(config),
        group=None,
    )


Measure = Callable[[Any, str, Peaks, Recorder], None]


def benchmark_run(measure: Measure) -> Callable[[Any, Job], Outcome]:
    """The run function of a benchmark kind whose cases `measure(config, device, peaks, recorder)` times."""

    def run(config: BenchmarkConfig, job: Job) -> Outcome:
        device = check_device(config.hardware)
        peaks = peaks_for(config.hardware, torch.get_num_threads(), collect_provenance())
        recorder = Recorder()
        measure(config, device, peaks, recorder)
        write_json_atomic(job.out_dir / "samples.json", recorder.samples)
        message = "; ".join(recorder.problems + recorder.notes)
        status = "invalid" if recorder.problems else "ok"
        return Outcome(status=status, message=message, metrics=recorder.metrics, artifacts=["samples.json"])

    return run


def check_log2_elements(log2_elements: int) -> None:
    """The input size of the elementwise benchmarks: 2^10 to 2^32 values."""
    if not 10 <= log2_elements <= 32:
        raise ConfigError(f"log2_elements must be within 10..32, got {log2_elements}")
