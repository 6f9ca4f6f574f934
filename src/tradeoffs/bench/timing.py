"""The timing engine every benchmark uses (docs/benchmarks.md, rule by rule).

`measure(fn, config)` times a zero-argument callable:
1. cold start: the first call alone, synchronised, reported separately (lazy init, allocator growth, compile);
2. warm-up: at least `warmup` calls and `warmup_time_s` seconds;
3. timed samples until both `min_runs` samples and `min_time_s` of measured time are reached, or the
   wall-clock cap `max_time_s`; the condition that ended the run is recorded (`stop_reason`).
   On a CPU a sample is a block of calls timed by torch.utils.benchmark's Timer, with torch's own block-size
   rule (timer overhead <= 0.01% of a block); on a GPU a sample is one call between CUDA events (device
   time, launch gaps included when the host is the bottleneck). An optional cache flush runs before each
   call (then one call per sample) and is never timed;
4. statistics of the raw samples (kept): median, p90, p99 with the count, IQR/median and the coefficient of
   variation with a noise flag; a recompilation (torch.compile) during the timed phase is flagged.

The statistics and the stopping rule are pure functions, tested on synthetic samples.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tradeoffs.bench.noise import NOISE_SUSPECT, NOISE_WARN
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.identity import descriptive

STOP_REASONS = ("min_runs", "min_time", "max_time")
DEVICES = ("cpu", "cuda")


@dataclass
class BenchConfig:
    """Timing rules of the benchmark engine (the bench presets): warm-up, minimum count and time, a time cap."""

    name: str = descriptive("default")
    warmup: int = 3  # warm-up calls after the cold (first) call ...
    warmup_time_s: float = 0.05  # ... and at least this long
    min_runs: int = 10
    min_time_s: float = 0.2
    max_time_s: float = 10.0
    repeats: int = 3  # fresh-process repeats for headline numbers
    l2_flush: bool = False

    def __post_init__(self) -> None:
        check_positive("bench.warmup", self.warmup, allow_zero=True)
        check_positive("bench.warmup_time_s", self.warmup_time_s, allow_zero=True)
        check_positive("bench.min_runs", self.min_runs)
        check_positive("bench.min_time_s", self.min_time_s)
        check_positive("bench.repeats", self.repeats)
        if self.max_time_s < self.min_time_s:
            raise ConfigError(f"bench.max_time_s ({self.max_time_s}) < bench.min_time_s ({self.min_time_s})")


# ------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Stats:
    """Summary of timing samples (seconds per call)."""

    count: int
    median: float
    mean: float
    minimum: float
    maximum: float
    q1: float
    q3: float
    p90: float
    p99: float
    iqr_over_median: float
    cv: float
    noise: str  # ok | warn (> 10%) | suspect (> 25%), from the larger of IQR/median and CV
    p90_indicative: bool  # fewer than 2 samples lie above the percentile: read it as indicative only
    p99_indicative: bool


def tail_is_indicative(count: int, quantile: float) -> bool:
    """A tail percentile is indicative unless at least two samples lie beyond it (count * (1 - q) >= 2)."""
    return count * (1.0 - quantile) < 2.0 - 1e-9


def noise_flag(iqr_over_median: float, cv: float) -> str:
    """'ok', 'warn' above 10% or 'suspect' above 25%, judged on the larger of the two spreads."""
    spread = max(iqr_over_median, cv)
    if not math.isfinite(spread) or spread > NOISE_SUSPECT:
        return "suspect"
    return "warn" if spread > NOISE_WARN else "ok"


def summarize(samples: Sequence[float]) -> Stats:
    """Median, quartiles, p90/p99, IQR/median, CV and the noise flag of positive timing samples."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("summarize needs at least one sample")
    q1, median, q3, p90, p99 = np.percentile(values, [25, 50, 75, 90, 99])
    mean = float(values.mean())
    cv = float(values.std(ddof=1) / mean) if values.size > 1 else 0.0
    iqr = float((q3 - q1) / median) if median > 0 else math.inf
    return Stats(
        count=int(values.size),
        median=float(median),
        mean=mean,
        minimum=float(values.min()),
        maximum=float(values.max()),
        q1=float(q1),
        q3=float(q3),
        p90=float(p90),
        p99=float(p99),
        iqr_over_median=iqr,
        cv=cv,
        noise=noise_flag(iqr, cv),
        p90_indicative=tail_is_indicative(values.size, 0.90),
        p99_indicative=tail_is_indicative(values.size, 0.99),
    )


def stop_reason(count: int, measured_s: float, wall_s: float, config: BenchConfig) -> str | None:
    """Why a timed phase ends now, or None to go on: once both minimums hold, the one reached last
    ('min_runs' if the count was, 'min_time' if the measured time was); else 'max_time' at the wall-clock cap."""
    if count >= config.min_runs and measured_s >= config.min_time_s:
        return "min_time" if count > config.min_runs else "min_runs"
    return "max_time" if wall_s >= config.max_time_s else None


def validity_problems(count: int, measured_s: float, recompiled: bool, config: BenchConfig) -> list[str]:
    """Why a timed phase is invalid: below its minimum count or time (cut by the cap), or recompiled."""
    problems = []
    if count < config.min_runs:
        problems.append(f"{count} samples < min_runs={config.min_runs} at the {config.max_time_s} s cap")
    if measured_s < config.min_time_s:
        problems.append(f"measured {measured_s:.3g} s < min_time_s={config.min_time_s}")
    if recompiled:
        problems.append("torch.compile recompiled during the timed phase")
    return problems


# ------------------------------------------------------------------------------------------ measurement
@dataclass
class Measurement:
    """One timed benchmark: raw samples (seconds per call), their statistics and how the run went."""

    samples_s: list[float]
    calls_per_sample: int
    stats: Stats
    stop_reason: str
    cold_start_s: float
    warmup_calls: int
    measured_s: float  # sum of the timed samples' durations
    wall_s: float  # wall-clock time of the timed phase (flushes and overhead included)
    device: str
    method: str
    threads: int
    l2_flush: bool
    recompiled: bool  # torch.compile compiled a new graph during the timed phase
    valid: bool  # both minimums reached (a run cut by the cap before them is not)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Everything but the raw samples, as plain values (for result labels and printing)."""
        out = asdict(self)
        out.pop("samples_s")
        out.update(out.pop("stats"))
        return out


def _synchronize(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _compiled_graphs() -> int:
    """Graphs torch.compile has produced so far in this process (0 if dynamo was never imported)."""
    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    if dynamo_utils is None:
        return 0
    return int(dynamo_utils.counters["stats"].get("unique_graphs", 0))


def _cpu_cache_bytes() -> int:
    """Size of the largest CPU cache level (sysfs), 32 MiB if unknown."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes, default=32 * 2**20)


def cache_flusher(device: str) -> Callable[[], None]:
    """A callable that evicts the caches by writing a buffer twice the size of the largest cache (the GPU's
    L2, the CPU's last level), as triton's do_bench does."""
    if device == "cuda":
        size = 2 * torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size
    else:
        size = min(2 * _cpu_cache_bytes(), 2**30)
    buffer = torch.empty(max(size // 4, 1), dtype=torch.int32, device=device)
    return lambda: buffer.zero_()


def _warm_up(fn: Callable[[], Any], config: BenchConfig, sync: Callable[[], None]) -> tuple[int, float]:
    """Run the warm-up; returns (calls, seconds per call)."""
    calls, start = 0, time.perf_counter()
    while calls < config.warmup or time.perf_counter() - start < config.warmup_time_s:
        if time.perf_counter() - start >= config.max_time_s:
            break
        fn()
        sync()
        calls += 1
    return calls, (time.perf_counter() - start) / max(calls, 1)


def _cpu_samples(
    fn: Callable[[], Any], config: BenchConfig, threads: int, flush: Callable[[], None] | None
) -> tuple[list[float], int, str, float]:
    """Blocks of calls timed by torch.utils.benchmark.Timer until the stopping rule ends the run."""
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    # torch's block-size rule (what blocked_autorange uses): timer overhead <= 1e-4 of a block and a block
    # of at least min_time_s / 1000; one call per sample when the cache is flushed between calls.
    number = 1 if flush else timer._estimate_block_size(config.min_time_s)
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        if flush:
            flush()
        samples.append(timer._timeit(number) / number)
        reason = stop_reason(len(samples), sum(samples) * number, time.perf_counter() - start, config)
        if reason:
            return samples, number, reason, time.perf_counter() - start


def _cuda_samples(
    fn: Callable[[], Any], config: BenchConfig, flush: Callable[[], None] | None
) -> tuple[list[float], int, str, float]:
    """One call per sample between CUDA events (device time) until the stopping rule ends the run."""
    samples: list[float] = []
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start = time.perf_counter()
    while True:
        if flush:
            flush()
        begin.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(begin.elapsed_time(end) / 1e3)
        reason = stop_reason(len(samples), sum(samples), time.perf_counter() - start, config)
        if reason:
            return samples, 1, reason, time.perf_counter() - start


def measure(
    fn: Callable[[], Any], config: BenchConfig, *, device: str = "cpu", l2_flush: bool | None = None
) -> Measurement:
    """Time `fn` by the engine's rules (module docstring) on `device` with the current torch thread count."""
    check_choice("device", device, DEVICES)
    flush_on = config.l2_flush if l2_flush is None else l2_flush
    sync = _synchronize(device)
    threads = torch.get_num_threads()

    start = time.perf_counter()
    fn()
    sync()
    cold = time.perf_counter() - start
    warmup_calls, _ = _warm_up(fn, config, sync)

    flush = cache_flusher(device) if flush_on else None
    graphs = _compiled_graphs()
    if device == "cuda":
        samples, number, reason, wall = _cuda_samples(fn, config, flush)
        method = "CUDA events around each call (device time)"
    else:
        samples, number, reason, wall = _cpu_samples(fn, config, threads, flush)
        method = f"torch.utils.benchmark.Timer, blocks of {number} call(s)"
    recompiled = _compiled_graphs() != graphs

    measured = sum(samples) * number
    problems = validity_problems(len(samples), measured, recompiled, config)
    return Measurement(
        samples_s=samples,
        calls_per_sample=number,
        stats=summarize(samples),
        stop_reason=reason,
        cold_start_s=cold,
        warmup_calls=warmup_calls,
        measured_s=measured,
        wall_s=wall,
        device=device,
        method=method,
        threads=threads,
        l2_flush=flush_on,
        recompiled=recompiled,
        valid=not problems,
        problems=problems,
    )


# ------------------------------------------------------------------------------ stateful runs of steps
class StepTimer:
    """Times the named steps of one run of a stateful sequence (prefill then decode steps, each changing a
    cache, so they cannot be repeated in blocks): a synchronised host clock on a CPU (a step is a whole
    forward pass, so the clock's overhead is negligible), CUDA events on a GPU."""

    def __init__(self, device: str):
        self.device = device
        self._steps: list[tuple[str, Any, Any]] = []

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run `fn` as one timed step called `name`; returns its result."""
        if self.device == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            out = fn()
            end.record()
            self._steps.append((name, begin, end))
            return out
        start = time.perf_counter()
        out = fn()
        self._steps.append((name, start, time.perf_counter()))
        return out

    def durations(self) -> dict[str, list[float]]:
        """Seconds of each step, by name, in order (synchronises the device first)."""
        out: dict[str, list[float]] = {}
        if self.device == "cuda":
            torch.cuda.synchronize()
        for name, begin, end in self._steps:
            seconds = begin.elapsed_time(end) / 1e3 if self.device == "cuda" else end - begin
            out.setdefault(name, []).append(seconds)
        return out


@dataclass
class StepMeasurement:
    """Timed runs of steps: per step name, per run, the durations (raw samples), and how the runs went."""

    steps_s: dict[str, list[list[float]]]
    stop_reason: str
    cold_start_s: float  # the first run, all its steps
    warmup_runs: int
    measured_s: float
    wall_s: float
    device: str
    threads: int
    recompiled: bool
    valid: bool
    problems: list[str] = field(default_factory=list)

    def run_totals(self, name: str) -> list[float]:
        """Per run, the summed duration of the steps called `name` (e.g. the decode window)."""
        return [sum(run) for run in self.steps_s[name]]

    def per_run(self, name: str) -> Stats:
        return summarize(self.run_totals(name))

    def per_step(self, name: str) -> Stats:
        """Statistics over every step called `name` of every run (e.g. per-token latency)."""
        return summarize([seconds for run in self.steps_s[name] for seconds in run])


def measure_steps(run: Callable[[StepTimer], Any], config: BenchConfig, *, device: str = "cpu") -> StepMeasurement:
    """Time whole runs of steps by the engine's rules: a cold first run reported apart, warm-up runs, then
    runs until both min_runs runs and min_time_s of measured step time, or the max_time_s cap."""
    check_choice("device", device, DEVICES)
    sync = _synchronize(device)

    def timed_run() -> dict[str, list[float]]:
        timer = StepTimer(device)
        run(timer)
        sync()
        return timer.durations()

    cold = sum(sum(steps) for steps in timed_run().values())
    warmup_runs, start = 0, time.perf_counter()
    while warmup_runs < config.warmup or time.perf_counter() - start < config.warmup_time_s:
        if time.perf_counter() - start >= config.max_time_s:
            break
        timed_run()
        warmup_runs += 1
    graphs = _compiled_graphs()
    steps: dict[str, list[list[float]]] = {}
    measured, count, start = 0.0, 0, time.perf_counter()
    while True:
        for name, durations in timed_run().items():
            steps.setdefault(name, []).append(durations)
            measured += sum(durations)
        count += 1
        reason = stop_reason(count, measured, time.perf_counter() - start, config)
        if reason:
            break
    recompiled = _compiled_graphs() != graphs
    problems = validity_problems(count, measured, recompiled, config)
    return StepMeasurement(
        steps_s=steps,
        stop_reason=reason,
        cold_start_s=cold,
        warmup_runs=warmup_runs,
        measured_s=measured,
        wall_s=time.perf_counter() - start,
        device=device,
        threads=torch.get_num_threads(),
        recompiled=recompiled,
        valid=not problems,
        problems=problems,
    )
