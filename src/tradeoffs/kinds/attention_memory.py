"""The attention_memory kind: memory and time of attention forward + backward over sequence lengths, by
implementation (SDPA's fused flash/efficient backends, SDPA's math backend, an explicit softmax(QK^T)V;
tradeoffs.bench.attention, docs/memory.md).

Each (backend, length) case runs in a fresh fork on a CPU (its RSS high-water mark is its own) and in the job
itself on CUDA (the allocator's peak). Metrics, labelled with `backend` and `length`: `saved_bytes` (exact,
counted once per storage) beside `formula_saved_bytes` for the fused kernels (Q, K, V, O and the log-sum-exp),
`peak_bytes`, `time_median_s`, `tflops` and `pct_of_peak`; per backend `memory_slope` (fitted log-log slope of
saved or peak bytes over the lengths, label `measure`, interval labels two standard errors wide) and
`time_slope`; per fused backend and unfused baseline `speedup` (baseline time / fused time) per length and
`speedup_growth` (the speedup at the longest over the shortest length, interval from the timings' IQR/median);
per backend and tensor `max_abs_diff` from a float64 explicit reference and `max_rel_diff` (over the
reference's largest magnitude). A backend the machine lacks gives
`supported` = 0 with the reason, not a failed run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from tradeoffs.bench.attention import (
    BACKENDS,
    DTYPES,
    FUSED,
    AttentionCase,
    AttentionShape,
    attention_flops,
    differences,
    estimated_peak_bytes,
    fused_saved_bytes,
    loglog_slope,
    measure_case,
)
from tradeoffs.bench.hardware import check_device, peaks_for
from tradeoffs.bench.saved import in_fork
from tradeoffs.bench.timing import BenchConfig
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.provenance import collect_provenance
from tradeoffs.resources import JobResources, gpus, round_up, threads
from tradeoffs.results import Metric, Outcome, write_json_atomic


@dataclass
class AttentionMemoryConfig(ExperimentConfig):
    """Attention implementations x sequence lengths on (batch, heads, length, head_dim) inputs, with the
    timing rules, the length where outputs and gradients are compared, and the memory the cases may use."""

    kind: str = "attention_memory"
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    lengths: list[int] = field(default_factory=lambda: [128, 256, 512, 768, 1024, 2048])
    batch_size: int = 1
    n_head: int = 1
    head_dim: int = 16
    dtype: str = "fp32"
    causal: bool = True
    check_length: int = 512  # outputs and gradients compared with a float64 reference at this length
    memory_limit_gb: float = 4.0  # no case may be estimated above this (bench.attention.estimated_peak_bytes)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def __post_init__(self) -> None:
        if not self.backends:
            raise ConfigError(f"backends: give at least one of {', '.join(BACKENDS)}")
        for backend in self.backends:
            check_choice("backends", backend, BACKENDS)
        check_choice("dtype", self.dtype, tuple(DTYPES))
        for key in ("batch_size", "n_head", "head_dim", "check_length", "memory_limit_gb"):
            check_positive(key, getattr(self, key))
        if len(set(self.lengths)) < 3 or min(self.lengths) < 1:
            raise ConfigError(f"lengths: give at least 3 distinct positive lengths to fit a slope, got {self.lengths}")
        for backend in self.backends:
            for length in [*self.lengths, self.check_length]:
                need = estimated_peak_bytes(backend, self.shape, length) * (2 if length == self.check_length else 1)
                if need > self.memory_limit_gb * 1e9:
                    raise ConfigError(
                        f"lengths: {backend} attention at length {length} needs about {need / 1e9:.3g} GB "
                        f"(estimated), above memory_limit_gb={self.memory_limit_gb}; drop the length or raise the limit"
                    )

    @property
    def shape(self) -> AttentionShape:
        return AttentionShape(self.batch_size, self.n_head, self.head_dim, self.dtype, self.causal)


def _case_metrics(case: AttentionCase, config: AttentionMemoryConfig, peak_tflops: float) -> list[Metric]:
    labels = {"backend": case.backend, "length": case.length}
    if not case.supported:
        return [Metric("supported", 0.0, "", {**labels, "reason": case.reason})]
    timing = case.timing
    timing_labels = {**labels, "noise": timing["noise"], "stop_reason": timing["stop_reason"]}
    tflops = attention_flops(config.shape, case.length) / timing["median"] / 1e12
    metrics = [
        Metric("supported", 1.0, "", {**labels, "kernel": case.kernel}),
        Metric("saved_bytes", case.saved_bytes, "B", {**labels, "tensors": case.saved_tensors}),
        Metric("peak_bytes", case.peak_bytes, "B", {**labels, "source": case.peak_source, "reset": case.peak_reset}),
        Metric("time_median_s", timing["median"], "s", timing_labels),
        Metric("time_iqr_over_median", timing["iqr_over_median"], "", timing_labels),
        Metric("tflops", tflops, "TFLOP/s", labels),
        Metric("pct_of_peak", 100 * tflops / peak_tflops if peak_tflops else math.nan, "%", labels),
    ]
    if case.backend in FUSED:
        metrics.append(Metric("formula_saved_bytes", fused_saved_bytes(config.shape, case.length), "B", labels))
    return metrics


def _slope(name: str, cases: list[AttentionCase], value, labels: dict) -> Metric:
    points = [(c.length, value(c)) for c in cases if math.isfinite(value(c)) and value(c) > 0]
    if len(points) < 3:
        return Metric(name, math.nan, "", {**labels, "fit_reason": f"{len(points)} positive points, needs 3"})
    slope, error = loglog_slope(*zip(*points, strict=True))
    return Metric(name, slope, "", {**labels, "interval_low": slope - 2 * error, "interval_high": slope + 2 * error})


def _speedups(by_backend: dict[str, list[AttentionCase]]) -> list[Metric]:
    """Baseline time / fused time per length, and its growth from the shortest to the longest length."""
    metrics = []
    for fused in FUSED:
        for baseline in ("math", "explicit"):
            if fused not in by_backend or baseline not in by_backend:
                continue
            pairs = [
                (f, b)
                for f, b in zip(by_backend[fused], by_backend[baseline], strict=True)
                if f.supported and b.supported
            ]
            if len(pairs) < 2:
                continue
            labels = {"backend": fused, "baseline": baseline}
            for f, b in pairs:
                speedup = b.timing["median"] / f.timing["median"]
                metrics.append(Metric("speedup", speedup, "x", {**labels, "length": f.length}))
            (f0, b0), (f1, b1) = pairs[0], pairs[-1]
            growth = (b1.timing["median"] / f1.timing["median"]) / (b0.timing["median"] / f0.timing["median"])
            spread = math.sqrt(sum(c.timing["iqr_over_median"] ** 2 for c in (f0, b0, f1, b1)))
            band = {"interval_low": growth * math.exp(-spread), "interval_high": growth * math.exp(spread)}
            metrics.append(
                Metric("speedup_growth", growth, "x", {**labels, **band, "lengths": f"{f0.length}-{f1.length}"})
            )
    return metrics


def run(config: AttentionMemoryConfig, job: Job) -> Outcome:
    device = check_device(config.hardware)
    peaks = peaks_for(config.hardware, torch.get_num_threads(), collect_provenance())
    peak_tflops = peaks.tflops.get(config.dtype, math.nan)  # the peaks table names dtypes as the config does
    fork = device == "cpu" and hasattr(os, "fork")
    by_backend: dict[str, list[AttentionCase]] = {}
    metrics: list[Metric] = []
    samples = []
    for backend in config.backends:
        cases = []
        for length in sorted(set(config.lengths)):

            def case(backend=backend, length=length) -> AttentionCase:
                return measure_case(backend, config.shape, length, config.bench, device, config.seed)

            cases.append(in_fork(case) if fork else case())
            metrics += _case_metrics(cases[-1], config, peak_tflops)
            samples.append({"backend": backend, "length": length, "samples_s": cases[-1].samples_s})
        by_backend[backend] = cases
        measured = [c for c in cases if c.supported]
        if not measured:  # the machine lacks it: its `supported` rows say why
            continue
        labels = {"backend": backend}
        metrics += [
            _slope("memory_slope", measured, lambda c: c.saved_bytes, {**labels, "measure": "saved"}),
            _slope("memory_slope", measured, lambda c: c.peak_bytes, {**labels, "measure": "peak"}),
            _slope("time_slope", measured, lambda c: c.timing["median"], labels),
        ]
    metrics += _speedups(by_backend)

    def compare() -> dict:
        return differences(config.backends, config.shape, config.check_length, device, config.seed)

    for backend, found in (in_fork(compare) if fork else compare()).items():
        for tensor, (absolute, relative) in found.items():
            labels = {"backend": backend, "tensor": tensor, "length": config.check_length}
            metrics += [Metric("max_abs_diff", absolute, "", labels), Metric("max_rel_diff", relative, "", labels)]
    write_json_atomic(job.out_dir / "samples.json", samples)
    notes = [f"{c.backend}: {c.reason}" for cases in by_backend.values() for c in cases[:1] if not c.supported]
    problems = [
        f"{c.backend} at {c.length}: peak RSS not reset (an upper bound)"
        for cases in by_backend.values()
        for c in cases
        if c.supported and not c.peak_reset
    ]
    return Outcome(status="ok", message="; ".join(notes + problems), metrics=metrics, artifacts=["samples.json"])


def resources(config: AttentionMemoryConfig) -> JobResources:
    """One job of its own (a timing), with host memory for its largest case twice over on a CPU (on a GPU the
    cases live in device memory)."""
    largest = max(estimated_peak_bytes(b, config.shape, max(config.lengths)) for b in config.backends)
    host = 2 * largest if config.hardware.device == "cpu" else 0.0
    return JobResources(
        threads=threads(config, default=1),
        mem_mb=round_up(1500 + host / 1e6, 100),
        runtime=30,
        gpus=gpus(config),
        group=None,
    )


KIND = Kind(AttentionMemoryConfig, run, resources)
