"""The gemm kind: TFLOP/s of a dtype over [M, K, N] shapes (tradeoffs.bench.gemm), as a percentage of the
hardware's peak, with the output's error against fp64 beside the speed and raw samples in samples.json."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tradeoffs.bench.gemm import ACCURACY_GATE, build_case, check_supported
from tradeoffs.bench.hardware import Peaks
from tradeoffs.bench.memory import track_peak_memory
from tradeoffs.bench.timing import measure
from tradeoffs.errors import ConfigError, Unsupported, check_choice
from tradeoffs.hardware import GEMM_DTYPES
from tradeoffs.kinds._timed import BenchmarkConfig, Recorder, benchmark_resources, benchmark_run
from tradeoffs.kinds.base import Kind
from tradeoffs.resources import JobResources


@dataclass
class GemmConfig(BenchmarkConfig):
    """GEMM throughput of one dtype over [M, K, N] shapes, with its output error against fp64 (the gemm kind)."""

    kind: str = "gemm"
    dtype: str = "fp32"  # one of GEMM_DTYPES
    shapes: list[list[int]] = field(default_factory=lambda: [[1024, 1024, 1024]])  # [M, K, N] each
    time_budget_s: float = 0.0  # the job's time for all its shapes (0: none); see _over_budget

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("dtype", self.dtype, GEMM_DTYPES)
        if not self.time_budget_s >= 0:
            raise ConfigError(f"time_budget_s: {self.time_budget_s}; valid: 0 (no budget) or a positive number of s")
        if not self.shapes:
            raise ConfigError("shapes: a gemm benchmark needs at least one [M, K, N]")
        for shape in self.shapes:
            if len(shape) != 3 or min(shape) < 1:
                raise ConfigError(f"shapes: each shape is [M, K, N] with positive sizes, got {shape}")


def gemm_resources(config: GemmConfig) -> JobResources:
    """Memory for the largest operands: fp32, bf16 and quantized copies and an fp64 reference, about 40 bytes
    per GEMM element."""
    elements = max(m * k + k * n + m * n for m, k, n in config.shapes)
    return benchmark_resources(config, 40 * elements)


def _over_budget(config: GemmConfig, flops: int, seconds_per_flop: float, elapsed_s: float) -> str:
    """Why a shape is skipped under the job's time budget ('' when it fits): its predicted cost (the measured
    seconds per FLOP of the shapes before it times its cold, warm-up and timed calls, the timed part at most the
    engine's cap) would overrun the budget. Emulated dtypes (fp16 or bf16 without native units) run 100x slower
    than fp32, so on such a CPU a large shape alone can take minutes; the budget skips it with this reason."""
    if not config.time_budget_s or not seconds_per_flop:
        return ""
    call = seconds_per_flop * flops
    bench = config.bench
    predicted = call * (1 + bench.warmup) + min(call * bench.min_runs, bench.max_time_s)
    if elapsed_s + predicted <= config.time_budget_s:
        return ""
    return (
        f"skipped: about {predicted:.3g} s predicted from the shapes before it, {config.time_budget_s - elapsed_s:.3g} "
        f"s left of time_budget_s={config.time_budget_s:g}"
    )


def _gemm(config: GemmConfig, device: str, peaks: Peaks, recorder: Recorder) -> None:
    check_supported(config.dtype, device, config.hardware)
    ran, seconds_per_flop, start = 0, 0.0, time.perf_counter()
    for m, k, n in config.shapes:
        labels = {"m": m, "k": k, "n": n, "shape": f"{m}x{k}x{n}"}
        if skipped := _over_budget(config, 2 * m * k * n, seconds_per_flop, time.perf_counter() - start):
            recorder.add("supported", 0, "", {**labels, "reason": skipped})
            recorder.notes.append(f"{labels['shape']} {skipped}")
            continue
        try:
            case = build_case(config.dtype, (m, k, n), device, config.seed)
        except Unsupported as reason:
            recorder.add("supported", 0, "", {**labels, "reason": str(reason)})
            recorder.notes.append(f"{labels['shape']} unsupported: {reason}")
            continue
        ran += 1
        with case.precision():
            measurement = measure(case.fn, config.bench, device=device)
            with track_peak_memory(device) as memory:
                case.fn()
        labels["kernel"] = case.kernel
        seconds_per_flop = max(seconds_per_flop, measurement.stats.median / case.flops)
        tflops = case.flops / measurement.stats.median / 1e12
        peak = peaks.tflops.get(case.peak_dtype)
        above_peak = peaks.above_peak(case.peak_dtype, tflops)
        recorder.add("supported", 1, "", labels)
        recorder.add("tflops", tflops, "TFLOP/s", labels)
        recorder.add(
            "pct_of_peak",
            peaks.percent(case.peak_dtype, tflops),
            "%",
            {
                **labels,
                "peak_dtype": case.peak_dtype,
                "peak_tflops": peak,
                "peak_method": peaks.method if peak else "no units",
                "peak_clock": peaks.clock,
                "peak_valid": int(not above_peak),
            },
        )
        if above_peak:
            recorder.notes.append(f"{labels['shape']}: {above_peak}")
        if not peak and peaks.peak_statement(case.peak_dtype) not in recorder.notes:
            recorder.notes.append(peaks.peak_statement(case.peak_dtype))
        recorder.add("arithmetic_intensity", case.intensity, "FLOP/B", labels)
        gbs = case.bytes / measurement.stats.median / 1e9
        recorder.add("gbs", gbs, "GB/s", labels)
        if peaks.bandwidth_gbs:
            recorder.add("pct_of_bandwidth", 100 * gbs / peaks.bandwidth_gbs, "%", labels)
        recorder.add("output_rel_error", case.output_error, "", labels)
        if not case.output_error <= ACCURACY_GATE[case.dtype]:
            recorder.problems.append(
                f"{labels['shape']}: output error {case.output_error:.3g} fails the accuracy gate "
                f"{ACCURACY_GATE[case.dtype]} of {case.dtype}"
            )
        recorder.memory(memory, labels)
        recorder.timing(f"gemm {case.dtype} {labels['shape']}", measurement, labels)
    if not ran:
        raise Unsupported("; ".join(recorder.notes))
    recorder.notes.append(f"peaks: {peaks.source}")


KIND = Kind(GemmConfig, benchmark_run(_gemm), gemm_resources)
