"""Timing verdicts that can be trusted: which metrics are wall-clock timings, and when a part decided from them
is unstable rather than confirmed or refuted.

A timing moves with the machine's load between runs of the same commit, so a part that reads one is decided
only from a band of fresh-process repeats (at least MIN_REPEATS runs on each side, their spread measured)
whose half-width is at most the methodology's "suspect" noise (25%, tradeoffs.bench.noise.NOISE_SUSPECT) of
the measured level. Otherwise it is inconclusive with reason UNSTABLE: a distinct mark, not a flip.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from tradeoffs.bench.noise import NOISE_SUSPECT
from tradeoffs.report.claims.criteria import fmt
from tradeoffs.report.claims.select import select_rows
from tradeoffs.report.claims.spec import Part
from tradeoffs.report.claims.verdicts import (
    FIT_FAILED,
    HARDWARE_ABSENT,
    NOT_IN_SUITE,
    RUNS_FAILED,
    TOO_FEW_RUNS,
    UNSTABLE,
    Band,
    Decision,
    inconclusive,
)

MIN_REPEATS = 3  # fresh-process repeats behind a timing's band (methodology rule 5)

# The metrics measured with a wall clock (times, and rates or utilisations divided by a time): the one list
# the claims consult to tell a timing from a deterministic or seeded quantity.
TIMING_METRICS = frozenset(
    {
        "time_median_s",
        "time_p90_s",
        "time_p99_s",
        "time_cv",
        "time_iqr_over_median",
        "cold_start_s",
        "load_s",
        "tflops",
        "pct_of_peak",
        "gbs",
        "pct_of_bandwidth",
        "bandwidth_gbs",
        "elements_per_s",
        "pct_of_copy",
        "speedup_vs_torchao",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "tokens_per_s",
        "cold_start_step",
        "step_time_median_s",
        "model_tflops_per_s",
        "mfu",
        "hfu",
        "mfu_ratio",
        "hfu_ratio",
        "time_ratio",
        "time_slope",
        "speedup",
        "speedup_growth",
        "prefill_tflops",
        "decode_tflops",
        "prefill_pct_of_peak",
        "decode_pct_of_peak",
    }
)


# The memory a process measured while it worked (peak and growth of its resident set, a tracked allocator peak,
# and the copies of an input that peak implies): not timed, yet not reproducible to the byte either (allocator
# caching, page reuse and the interpreter's own allocations move them between runs of one commit). Two runs are
# compared apart from them, as from timings.
MEASURED_METRICS = frozenset(
    {
        "peak_memory",
        "peak_rss",
        "peak_rss_max",
        "rss_growth",
        "rss_growth_max",
        "peak_rss_growth_bytes",
        "peak_bytes",
        "peak_ratio",
        "copies_of_input",
    }
)

# Every metric whose value moves between identical runs: what a comparison of two runs sets apart.
VARYING_METRICS = TIMING_METRICS | MEASURED_METRICS


def timing_metrics(results: pd.DataFrame, part: Part, among: frozenset[str] = TIMING_METRICS) -> list[str]:
    """The timing metrics (or the metrics of `among`) a part's judged reads decide from (a read without `metric`
    reads every metric of its rows), in the order met."""
    found: list[str] = []
    for read in part.judged:
        metrics = read.metric
        if not metrics and len(results) and "metric" in results:
            rows = select_rows(results, read.study, (), read.where, read.statuses)
            metrics = tuple(rows["metric"].dropna().astype(str).unique())
        found += [m for m in metrics if m in among and m not in found]
    return found


def relative_width(band: Band) -> float:
    """The band's half-width as a fraction of the measured level (a ratio's band is relative already)."""
    if band.log:
        return math.expm1(band.half)
    level = band.level if band.level == band.level else abs(band.value)
    return band.half / level if level > 0 else math.inf


def instability(bands: tuple[Band, ...]) -> str:
    """Why a timing decided from `bands` cannot be trusted, or '' when every band comes from at least
    MIN_REPEATS fresh-process repeats and is at most NOISE_SUSPECT of its level wide."""
    if not bands:
        return "no band from fresh-process repeats"
    problems = []
    for band in bands:
        if band.units < MIN_REPEATS or not band.spread >= 0:
            problems.append(f"{band.name}: {band.units} {band.unit_name}, needs {MIN_REPEATS} fresh-process repeats")
        elif (width := relative_width(band)) > NOISE_SUSPECT:
            problems.append(f"{band.name}: band +-{fmt(100 * width)}% of the level, above {fmt(100 * NOISE_SUSPECT)}%")
    return "; ".join(problems)


def checked_timing(decision: Decision, metrics: list[str]) -> Decision:
    """The decision of a part that reads the timing `metrics`: unchanged when its bands are stable, else
    inconclusive (unstable) with the verdict it would have given and why."""
    if not metrics or decision.reason in (NOT_IN_SUITE, HARDWARE_ABSENT, RUNS_FAILED, FIT_FAILED, UNSTABLE):
        return decision
    if decision.reason == TOO_FEW_RUNS and not decision.bands:  # too few configurations (shapes, sizes), not repeats
        return decision
    why = instability(decision.bands)
    if not why:
        return decision
    would = f"{decision.verdict} ({decision.reason})" if decision.reason else decision.verdict
    test = f"{decision.test}; unstable timing ({', '.join(metrics)}): {why}; would be {would}"
    unstable = inconclusive(UNSTABLE, test, decision.numbers, decision.run_ids, decision.bands)
    return dataclasses.replace(unstable, run_ids=decision.run_ids)
