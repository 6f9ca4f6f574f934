"""The timing engine: statistics on synthetic samples, the stopping rule, noise flags, and real measurements."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from tradeoffs.bench.memory import track_peak_memory
from tradeoffs.bench.timing import (
    BenchConfig,
    measure,
    measure_steps,
    noise_flag,
    stop_reason,
    summarize,
    tail_is_indicative,
)


def test_summarize_on_known_samples():
    stats = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (stats.count, stats.median, stats.mean, stats.minimum, stats.maximum) == (5, 3.0, 3.0, 1.0, 5.0)
    assert (stats.q1, stats.q3) == (2.0, 4.0)
    assert stats.iqr_over_median == pytest.approx(2 / 3)
    assert stats.cv == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1) / 3)
    assert stats.p90 == pytest.approx(4.6) and stats.p99 == pytest.approx(4.96)
    assert stats.noise == "suspect" and stats.p90_indicative and stats.p99_indicative


def test_tail_percentiles_are_indicative_until_two_samples_lie_beyond():
    assert tail_is_indicative(19, 0.90) and not tail_is_indicative(20, 0.90)
    assert tail_is_indicative(199, 0.99) and not tail_is_indicative(200, 0.99)
    stats = summarize(np.full(200, 1e-3))
    assert not stats.p90_indicative and not stats.p99_indicative


@pytest.mark.parametrize(
    ("iqr", "cv", "flag"),
    [
        (0.01, 0.02, "ok"),
        (0.10, 0.10, "ok"),
        (0.11, 0.02, "warn"),
        (0.02, 0.2, "warn"),
        (0.02, 0.26, "suspect"),
        (0.3, 0.0, "suspect"),
        (math.inf, 0.0, "suspect"),
    ],
)
def test_noise_flag_thresholds(iqr, cv, flag):
    assert noise_flag(iqr, cv) == flag


def test_noise_flags_of_synthetic_spreads():
    rng = np.random.default_rng(0)
    assert summarize(1.0 + 0.01 * rng.standard_normal(1000)).noise == "ok"
    assert summarize(1.0 + 0.12 * rng.standard_normal(1000)).noise == "warn"
    assert summarize(rng.lognormal(0, 0.5, 1000)).noise == "suspect"
    assert summarize([2.0]).cv == 0.0 and summarize([2.0]).count == 1
    with pytest.raises(ValueError, match="at least one sample"):
        summarize([])


def test_stop_rule_records_which_condition_ended_the_run():
    config = BenchConfig(min_runs=10, min_time_s=1.0, max_time_s=5.0)
    assert stop_reason(9, 2.0, 2.0, config) is None  # count missing
    assert stop_reason(50, 0.9, 0.9, config) is None  # time missing
    assert stop_reason(10, 2.0, 2.0, config) == "min_runs"  # time was already there: the count ended it
    assert stop_reason(11, 1.0, 1.0, config) == "min_time"
    assert stop_reason(3, 0.5, 5.0, config) == "max_time"  # the cap, minimums not reached
    assert stop_reason(10, 1.0, 6.0, config) == "min_runs"  # minimums reached win over the cap


def test_measure_reaches_both_minimums_and_keeps_raw_samples():
    config = BenchConfig(warmup=2, warmup_time_s=0.0, min_runs=7, min_time_s=0.03, max_time_s=5.0)
    calls = []
    measurement = measure(lambda: calls.append(time.sleep(0.002)), config)
    assert measurement.valid and measurement.problems == []
    assert measurement.stop_reason in ("min_runs", "min_time")
    assert measurement.stats.count == len(measurement.samples_s) >= 7
    assert measurement.measured_s >= 0.03
    assert measurement.stats.median == pytest.approx(0.002, rel=0.5)
    assert measurement.warmup_calls == 2 and measurement.cold_start_s > 0
    assert measurement.threads == torch.get_num_threads() and not measurement.recompiled
    assert "torch.utils.benchmark.Timer" in measurement.method
    assert len(calls) >= 1 + 2 + 7 * measurement.calls_per_sample  # cold + warm-up + timed


def test_cheap_calls_are_timed_in_blocks():
    x = torch.ones(16)
    measurement = measure(lambda: x.add(1), BenchConfig(min_runs=5, min_time_s=0.02))
    assert measurement.calls_per_sample > 1
    assert measurement.stats.median < 1e-3


def test_a_run_cut_by_the_cap_is_invalid_and_says_why():
    config = BenchConfig(warmup=0, warmup_time_s=0.0, min_runs=1000, min_time_s=0.01, max_time_s=0.05)
    measurement = measure(lambda: time.sleep(0.01), config)
    assert measurement.stop_reason == "max_time" and not measurement.valid
    assert "min_runs=1000" in measurement.problems[0]


def test_flushed_runs_time_one_call_per_sample():
    config = BenchConfig(warmup=1, warmup_time_s=0.0, min_runs=3, min_time_s=0.0001, l2_flush=True)
    x = torch.ones(1024)
    measurement = measure(lambda: x.sum(), config)
    assert measurement.l2_flush and measurement.calls_per_sample == 1


def test_peak_memory_counts_a_calls_own_allocations():
    x = torch.ones(2**22)  # 16 MiB
    with track_peak_memory() as memory:
        copies = [x.clone() for _ in range(3)]
    del copies
    assert memory.rss_peak_reset
    assert memory.rss_growth / x.nbytes == pytest.approx(3.0, abs=0.3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_events_time_a_gpu_call():
    a = torch.randn(1024, 1024, device="cuda")
    measurement = measure(lambda: a @ a, BenchConfig(min_runs=5, min_time_s=0.01), device="cuda")
    assert measurement.method.startswith("CUDA events") and measurement.valid
    with track_peak_memory("cuda") as memory:
        a @ a
    assert memory.cuda_growth >= a.nbytes


def test_measure_steps_times_named_steps_of_whole_runs():
    config = BenchConfig(warmup=1, warmup_time_s=0.0, min_runs=4, min_time_s=0.01, max_time_s=5.0)

    def run(timer):
        timer.step("prefill", lambda: time.sleep(0.002))
        for _ in range(3):
            timer.step("decode", lambda: time.sleep(0.001))

    measurement = measure_steps(run, config)
    assert measurement.valid and measurement.warmup_runs == 1 and measurement.cold_start_s >= 0.005
    runs = len(measurement.steps_s["prefill"])
    assert runs >= 4 and measurement.stop_reason in ("min_runs", "min_time")
    assert measurement.per_step("decode").count == 3 * runs
    assert measurement.per_run("decode").median == pytest.approx(0.003, rel=0.6)
    assert measurement.run_totals("prefill")[0] == pytest.approx(0.002, rel=0.6)


def test_a_recompilation_inside_the_timed_phase_is_flagged():
    compiled = torch.compile(lambda x: x * 2 + 1, backend="eager")  # dynamo without inductor: fast
    calls = []

    def new_shape_after_warmup():
        calls.append(None)
        return compiled(torch.ones(1 if len(calls) <= 3 else 1000 + len(calls)))

    config = BenchConfig(warmup=2, warmup_time_s=0.0, min_runs=3, min_time_s=0.001)
    flagged = measure(new_shape_after_warmup, config)
    assert flagged.recompiled and not flagged.valid and "recompiled" in flagged.problems[0]
    x = torch.ones(8)
    steady = measure(lambda: compiled(x), config)
    assert not steady.recompiled and steady.valid
