"""The criteria: small pure functions that decide a part of a claim from selected rows.

Each takes the reads of its part as `Arm`s (the selected rows and each run's value: the mean of that run's
rows of the read's metric) and keyword parameters from conf/claims.yaml, and returns a Decision with the
numbers compared, the test applied and the runs read. A quantity is decided only when its noise band lies
wholly inside or wholly outside the claimed range; the band is the larger of a fixed `noise` (the known
resolution of a deterministic or Monte-Carlo measurement) and two standard errors over runs (seeds or
fresh-process repeats), so an effect smaller than the noise is inconclusive, never a verdict.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tradeoffs.errors import ConfigError
from tradeoffs.report.claims.verdicts import (
    CONFIRMED,
    HARDWARE_ABSENT,
    INCONCLUSIVE,
    REFUTED,
    RUNS_FAILED,
    TOO_FEW_RUNS,
    WITHIN_NOISE,
    Band,
    Decision,
    Number,
    combine,
    inconclusive,
)
from tradeoffs.report.frames import crest_frame, hardware_column


@dataclass(frozen=True)
class Arm:
    """The rows one read selected; `values` holds each run's value (index: run id)."""

    name: str
    label: str
    rows: pd.DataFrame
    values: pd.Series
    paper: float | None = None
    unit: str = ""

    @classmethod
    def of(cls, name: str, rows: pd.DataFrame, label: str = "", paper: float | None = None, unit: str = "") -> Arm:
        """An arm whose value per run is the mean of that run's rows (NaN values dropped)."""
        values = rows.groupby("id")["value"].mean().dropna() if len(rows) else pd.Series(dtype=float)
        return cls(name, label or name, rows, values.astype(float), paper, unit)

    @property
    def runs(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.runs else math.nan

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.rows["id"]))) if len(self.rows) else ()

    def standard_error(self, log: bool = False) -> float:
        """Standard error of the mean over runs (of log values with `log`); 0 for a single run."""
        values = np.log(self.values) if log else self.values
        return float(values.std(ddof=1) / math.sqrt(self.runs)) if self.runs > 1 else 0.0

    def number(self, name: str = "", value: float | None = None) -> Number:
        return Number(name or self.label, self.mean if value is None else value, self.paper, self.unit, self.runs)

    def subset(self, mask: pd.Series, label: str) -> Arm:
        """The arm restricted to the rows where `mask` holds."""
        return Arm.of(self.name, self.rows[mask], label, self.paper, self.unit)


@dataclass(frozen=True)
class Criterion:
    function: Callable[..., Decision]
    reads: tuple[str, ...] | None  # the named reads it judges; None: any number of them, in order

    @property
    def summary(self) -> str:
        return " ".join((self.function.__doc__ or "").split("\n\n")[0].split())


CRITERIA: dict[str, Criterion] = {}


def criterion(*reads: str, ordered: bool = False) -> Callable:
    """Register a criterion under its function's name, judging the named reads (or any, in order)."""

    def register(function: Callable[..., Decision]) -> Callable[..., Decision]:
        CRITERIA[function.__name__] = Criterion(function, None if ordered else reads)
        return function

    return register


def evaluate(name: str, arms: Sequence[Arm], params: dict) -> Decision:
    """Apply criterion `name` to the judged arms of a part (by name, or in order)."""
    entry = CRITERIA[name]
    if entry.reads is None:
        return entry.function(*arms, **params)
    return entry.function(**{arm.name: arm for arm in arms}, **params)


# ------------------------------------------------------------------------------------------------ helpers
def fmt(value: float) -> str:
    """A number with 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float | int | np.floating) else str(value)


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"in ({fmt(low)}, {fmt(high)})"
    return f"> {fmt(low)}" if low is not None else f"< {fmt(high)}"


def _run_ids(*arms: Arm) -> tuple[str, ...]:
    return tuple(sorted({i for arm in arms for i in arm.run_ids}))


def too_few(min_runs: int, *arms: Arm) -> Decision | None:
    """An inconclusive decision when an arm has fewer than `min_runs` runs, else None."""
    short = [a for a in arms if a.runs < min_runs]
    if not short:
        return None
    counts = ", ".join(f"{a.label}: {a.runs}" for a in short)
    bands = [Band(a.label, a.mean, math.nan, units=a.runs, needs=min_runs) for a in short]
    return inconclusive(
        TOO_FEW_RUNS, f"needs {min_runs} runs each; has {counts}", [a.number() for a in arms], _run_ids(*arms), bands
    )


def judge(
    band: tuple[float, float],
    low: float | None,
    high: float | None,
    what: str,
    numbers: Sequence[Number],
    run_ids,
    noise: Band | None = None,
) -> Decision:
    """Confirmed when the band lies inside (low, high), refuted when wholly outside, else within noise.
    `noise` records what the band was computed from (it gets the claimed range here)."""
    if low is None and high is None:
        raise ConfigError(f"{what}: give `low`, `high` or both")
    bands = (dataclasses.replace(noise, low=low, high=high),) if noise is not None else ()
    lo, hi = band
    if math.isnan(lo) or math.isnan(hi):
        return inconclusive(RUNS_FAILED, f"{what}: not a number", numbers, run_ids, bands)
    inside = (low is None or lo > low) and (high is None or hi < high)
    outside = (low is not None and hi < low) or (high is not None and lo > high)
    test = f"{what}; claimed {_range_text(low, high)}"
    if inside or outside:
        return Decision(CONFIRMED if inside else REFUTED, test, "", tuple(numbers), tuple(run_ids), bands)
    return inconclusive(WITHIN_NOISE, test, numbers, run_ids, bands)


def _band(a: Arm, b: Arm, ratio: bool, value: float, half: float, how: str = "") -> tuple[tuple[float, float], str]:
    """The noise band of a difference (`ratio`: a ratio, `half` in log space) and its text 'a - b = d (how;
    noise +-h)'."""
    how = f"{how}; " if how else ""
    if ratio:
        text = f"{a.label} / {b.label} = {fmt(value)} ({how}noise x{fmt(math.exp(half))})"
        return (value * math.exp(-half), value * math.exp(half)), text
    text = f"{a.label} - {b.label} = {value:+.4g}{' ' + a.unit if a.unit else ''} ({how}noise +-{half:.2g})"
    return (value - half, value + half), text


def _spread(arm: Arm, log: bool = False) -> float:
    """The standard deviation of one run's value (of its log with `log`); NaN below two runs."""
    values = np.log(arm.values) if log else arm.values
    return float(values.std(ddof=1)) if arm.runs > 1 else math.nan


def _difference_band(a: Arm, b: Arm, ratio: bool, noise: float) -> tuple[float, tuple[float, float], str, Band]:
    """(a - b or a / b, its noise band: two standard errors of the difference, at least `noise`, its text, and
    the band's record: with n runs an arm, half = 2 sqrt((s_a^2 + s_b^2) / n))."""
    if ratio:
        value = a.mean / b.mean
        floor = math.log1p(noise)
        half = max(floor, 2 * math.hypot(a.standard_error(log=True), b.standard_error(log=True)))
    else:
        value = a.mean - b.mean
        floor = noise
        half = max(noise, 2 * math.hypot(a.standard_error(), b.standard_error()))
    band, text = _band(a, b, ratio, value, half)
    name = f"{a.label} / {b.label}" if ratio else f"{a.label} - {b.label}"
    spread = math.hypot(_spread(a, ratio), _spread(b, ratio))
    level = max(abs(a.mean), abs(b.mean))
    record = Band(name, value, half, log=ratio, spread=spread, units=min(a.runs, b.runs), floor=floor, level=level)
    return value, band, text, record


def _paired_values(a: Arm, b: Arm, by: str) -> tuple[pd.Series, pd.Series]:
    """Each arm's mean value per value of the run column `by` (e.g. cfg.seed), on the values both arms have:
    runs that share a seed share their initialisation and data order, so their difference cancels it."""
    for arm in (a, b):
        if by not in arm.rows:
            raise ConfigError(f"paired_by: the runs of {arm.label} have no column {by!r} (e.g. cfg.seed)")
    means = [arm.values.groupby(_per_run(arm, by).reindex(arm.values.index)).mean() for arm in (a, b)]
    common = means[0].index.intersection(means[1].index)
    return means[0][common], means[1][common]


def _paired_half_width(differences: pd.Series) -> float:
    """Half-width of the two-sided 95% Student-t interval of the mean of `differences` (0 for one pair): the
    t quantile, not 2, because a handful of pairs estimates its own spread poorly (12.7 for 2 pairs)."""
    pairs = len(differences)
    if pairs < 2:
        return 0.0
    return float(stats.t.ppf(0.975, pairs - 1) * differences.std(ddof=1) / math.sqrt(pairs))


def _paired_band(
    a: Arm, b: Arm, by: str, ratio: bool, noise: float
) -> tuple[float, tuple[float, float], str, int, Band]:
    """(the mean paired difference or ratio, its noise band, its text, the number of pairs, the band's record):
    the 95% Student-t interval of the per-pair differences (of log ratios with `ratio`), at least `noise`."""
    first, second = _paired_values(a, b, by)
    floor = math.log1p(noise) if ratio else noise
    differences = np.log(first) - np.log(second) if ratio else first - second
    mean = float(differences.mean()) if len(differences) else math.nan
    value, half = (math.exp(mean) if ratio else mean), max(floor, _paired_half_width(differences))
    band, text = _band(a, b, ratio, value, half, f"paired by {by.split('.')[-1]}, {len(first)} pairs")
    record = Band(
        f"{a.label} / {b.label}" if ratio else f"{a.label} - {b.label}",
        value,
        half,
        log=ratio,
        spread=float(differences.std(ddof=1)) if len(differences) > 1 else math.nan,
        units=len(first),
        unit_name=f"pairs by {by.split('.')[-1]}",
        student_t=True,
        floor=floor,
        level=max(abs(a.mean), abs(b.mean)),
    )
    return value, band, text, len(first), record


# ----------------------------------------------------------------------------------------------- criteria
@criterion("a", "b")
def compare(
    a: Arm,
    b: Arm,
    *,
    low: float | None = None,
    high: float | None = None,
    ratio: bool = False,
    noise: float = 0.0,
    min_runs: int = 1,
    saturated: float | None = None,
    paired_by: str | None = None,
) -> Decision:
    """a - b (a / b with `ratio`) lies in (low, high).

    The noise band is +-max(noise, two standard errors of the difference); with `ratio` it is a factor
    exp(max(log(1 + noise), two standard errors of the log ratio)), so `noise` is relative. With `paired_by`
    (a run column such as cfg.seed), runs are matched on its values and the difference is the mean of the
    per-pair differences, its band their 95% Student-t interval (a paired test; `min_runs` counts pairs). With
    `saturated`, both arms at that value (a measure's ceiling, e.g. every output identical) measured no effect
    at all: the comparison is inconclusive (within noise) rather than evidence either way."""
    if few := too_few(min_runs, a, b):
        return few
    if saturated is not None and a.mean == saturated and b.mean == saturated:
        test = f"{a.label} and {b.label} both at {fmt(saturated)}: no effect measurable at this scale"
        return inconclusive(WITHIN_NOISE, test, [a.number(), b.number()], _run_ids(a, b))
    if ratio and not (a.mean > 0 and b.mean > 0):
        return inconclusive(RUNS_FAILED, f"ratio of non-positive values {a.mean}, {b.mean}", [], _run_ids(a, b))
    if paired_by is None:
        value, band, text, record = _difference_band(a, b, ratio, noise)
    else:
        value, band, text, pairs, record = _paired_band(a, b, paired_by, ratio, noise)
        if pairs < min_runs:
            test = f"needs {min_runs} pairs by {paired_by}; {a.label} and {b.label} share {pairs}"
            short = dataclasses.replace(record, needs=min_runs, low=low, high=high)
            return inconclusive(TOO_FEW_RUNS, test, [a.number(), b.number()], _run_ids(a, b), [short])
    numbers = [a.number(), b.number(), Number("ratio" if ratio else "difference", value, unit="" if ratio else a.unit)]
    return judge(band, low, high, text, numbers, _run_ids(a, b), record)


@criterion(ordered=True)
def ordered(*arms: Arm, higher: bool = True, ratio: bool = False, noise: float = 0.0, min_runs: int = 1) -> Decision:
    """Each read beats the next one (a higher value with `higher`, else a lower one), each step as compare."""
    bound = (1.0 if ratio else 0.0) if higher else None
    upper = None if higher else (1.0 if ratio else 0.0)
    steps = [
        compare(a, b, low=bound, high=upper, ratio=ratio, noise=noise, min_runs=min_runs)
        for a, b in itertools.pairwise(arms)
    ]
    decision = combine(steps, [f"{a.label} vs {b.label}" for a, b in itertools.pairwise(arms)])
    numbers = [a.number() for a in arms] + [n for n in decision.numbers if n.name.endswith(("difference", "ratio"))]
    return dataclasses.replace(decision, numbers=tuple(numbers))


@criterion("value")
def threshold(
    value: Arm,
    *,
    low: float | None = None,
    high: float | None = None,
    absolute: bool = False,
    noise: float = 0.0,
    min_runs: int = 1,
    interval: Sequence[str] | None = None,
) -> Decision:
    """The mean over runs (its magnitude with `absolute`) lies in (low, high).

    The band is +-max(noise, two standard errors over runs), or with `interval` = [low column, high column]
    the interval the rows carry (e.g. a fit's bootstrap interval)."""
    if few := too_few(min_runs, value):
        return few
    mean = abs(value.mean) if absolute else value.mean
    name = f"|{value.label}|" if absolute else value.label
    if interval:
        band = tuple(float(pd.to_numeric(value.rows[c], errors="coerce").mean()) for c in interval)
        if absolute:
            band = tuple(sorted(abs(x) for x in band))
        text = f"{name} = {fmt(mean)} (interval {fmt(band[0])} .. {fmt(band[1])})"
        half = (band[1] - band[0]) / 2
        record = Band(name, mean, half, units=value.runs, interval=True, level=abs(mean))
    else:
        half = max(noise, 2 * value.standard_error())
        band = (mean - half, mean + half)
        text = f"{name} = {fmt(mean)} (noise +-{half:.2g})"
        record = Band(name, mean, half, spread=_spread(value), units=value.runs, floor=noise, level=abs(mean))
    return judge(band, low, high, text, [value.number(name, mean)], value.run_ids, record)


@criterion(ordered=True)
def near_paper(*arms: Arm, tolerance: float) -> Decision:
    """Each read's value is within `tolerance` of the paper's number (a deterministic quantity: no noise)."""
    missing = [a.name for a in arms if a.paper is None]
    if missing:
        raise ConfigError(f"near_paper: reads {missing} have no `paper` value")
    if few := too_few(1, *arms):
        return few
    steps = [
        judge(
            (a.mean - a.paper,) * 2,
            -tolerance,
            tolerance,
            f"{a.label} - paper = {a.mean - a.paper:+.3g}",
            [a.number()],
            a.run_ids,
        )
        for a in arms
    ]
    return combine(steps)


def _model_at(curve: pd.DataFrame, name: str, crest: pd.Index) -> np.ndarray:
    """The model's QSNR of format `name` at the crest factors `crest` (linear interpolation)."""
    line = curve[curve["label.format"] == name].assign(c=lambda f: f["label.crest"].astype(float)).sort_values("c")
    return np.interp(crest.to_numpy(float), line["c"], line["value"])


@criterion("model", "measured")
def tracks_model(
    model: Arm, measured: Arm, *, min_agreement: float = 0.8, margin_db: float = 1.0, min_bins: int = 3
) -> Decision:
    """For every INT/FP pair of the model's runs, the Monte-Carlo QSNR gap INT - FP per crest-factor bin
    (numerics runs pooled per format, bins with enough blocks) has the sign of the model's gap at the bin's
    centre in at least `min_agreement` of the bins where the model's gap exceeds `margin_db`."""
    bins = crest_frame(measured.rows)
    curves = model.rows[model.rows["metric"] == "qsnr_theory_db"]
    steps, names, unjudged = [], [], []
    for run_id, curve in curves.groupby("id"):
        int_format, fp_format = curve["cfg.int_format.name"].iloc[0], curve["cfg.fp_format.name"].iloc[0]
        pair = bins[bins["format"].isin([int_format, fp_format])].pivot_table(
            index="crest", columns="format", values="qsnr_db"
        )
        names.append(f"{int_format} vs {fp_format}")
        if int_format not in pair or fp_format not in pair:
            unjudged.append(f"{names.pop()}: no Monte-Carlo bins of both formats")
            continue
        pair = pair.dropna()

        model_gap = _model_at(curve, int_format, pair.index) - _model_at(curve, fp_format, pair.index)
        measured_gap = (pair[int_format] - pair[fp_format]).to_numpy()
        clear = np.abs(model_gap) >= margin_db
        ids = [run_id, *measured.rows.loc[measured.rows["cfg.format.name"].isin([int_format, fp_format]), "id"]]
        if clear.sum() < min_bins:
            unjudged.append(f"{names.pop()}: {clear.sum()} bins with |model gap| >= {margin_db} dB, needs {min_bins}")
            continue
        agreement = float(np.mean(np.sign(model_gap[clear]) == np.sign(measured_gap[clear])))
        numbers = [Number("sign agreement", agreement, runs=len(set(ids))), Number("bins", float(clear.sum()))]
        test = f"sign agreement {agreement:.2f} over {clear.sum()} bins"
        steps.append(judge((agreement,) * 2, min_agreement - 1e-12, None, test, numbers, ids))
    if not steps:
        why = "; ".join(unjudged) or "no INT/FP pair among the model's runs"
        return inconclusive(TOO_FEW_RUNS, why, run_ids=_run_ids(model, measured))
    return with_unjudged(combine(steps, names), unjudged)


def with_unjudged(decision: Decision, unjudged: Sequence[str]) -> Decision:
    """The decision with the groups its criterion could not judge named in its test."""
    if not unjudged:
        return decision
    return dataclasses.replace(decision, test=f"{decision.test}; not judged: {'; '.join(unjudged)}")


# ------------------------------------------------------------------------------------------- hardware
def _with_hardware(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(hardware=hardware_column(rows)) if len(rows) else rows.assign(hardware=[])


def _numeric(rows: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(rows[column], errors="coerce")


@criterion("gemm")
def faster_where_units(
    gemm: Arm, *, dtypes: Sequence[str], baseline: str = "fp32", noise: float = 0.0, min_runs: int = 3
) -> Decision:
    """On every hardware whose peak for a dtype exceeds the baseline's (it has units for it), that dtype's
    GEMM throughput beats the baseline's at the largest shape both ran, over fresh-process repeats (ratio
    of medians > 1 beyond the repeats' noise). Dtypes without such units, or unsupported, are not judged."""
    rows = _with_hardware(gemm.rows)
    tflops = rows[rows["metric"] == "tflops"].assign(
        flops=lambda f: _numeric(f, "label.m") * _numeric(f, "label.k") * _numeric(f, "label.n")
    )
    steps, names, absent = [], [], []
    for hardware, on in rows.groupby("hardware"):
        base = tflops[(tflops["hardware"] == hardware) & (tflops["cfg.dtype"] == baseline)]
        for dtype in dtypes:
            runs = on[on["cfg.dtype"] == dtype]
            if runs.empty:
                continue
            fast = tflops[(tflops["hardware"] == hardware) & (tflops["cfg.dtype"] == dtype)]
            if fast.empty or base.empty:
                why = runs.loc[runs["status"] == "unsupported", "message"]
                absent.append(f"{dtype} on {hardware}: {why.iloc[0] if len(why) else 'no throughput measured'}")
                continue
            peak = _numeric(runs, "label.peak_tflops").max()  # the peak labels the % of peak rows
            base_peak = _numeric(on[on["cfg.dtype"] == baseline], "label.peak_tflops").max()
            if not peak > base_peak:
                absent.append(f"{dtype} on {hardware}: peak {fmt(peak)} not above {baseline}'s {fmt(base_peak)}")
                continue
            shared = set(fast["label.shape"]) & set(base["label.shape"])
            largest = fast[fast["label.shape"].isin(shared)].sort_values("flops")["label.shape"].iloc[-1]
            a = Arm.of(dtype, fast[fast["label.shape"] == largest], f"{dtype} TFLOP/s", unit="TFLOP/s")
            b = Arm.of(baseline, base[base["label.shape"] == largest], f"{baseline} TFLOP/s", unit="TFLOP/s")
            steps.append(compare(a, b, low=1.0, ratio=True, noise=noise, min_runs=min_runs))
            names.append(f"{dtype} on {hardware} at {largest}")
    if not steps:
        return inconclusive(HARDWARE_ABSENT, "no dtype with its own units: " + "; ".join(absent), run_ids=gemm.run_ids)
    return with_unjudged(combine(steps, names), absent)


@criterion("gemm")
def approaches_peak(
    gemm: Arm, *, dtypes: Sequence[str], min_pct: float, noise: float = 0.0, min_runs: int = 3
) -> Decision:
    """On every hardware, each dtype's % of peak rises from its smallest to its largest square GEMM and
    reaches `min_pct` at the largest (medians over fresh-process repeats, their noise as in compare)."""
    rows = _with_hardware(gemm.rows)
    rows = rows[(rows["metric"] == "pct_of_peak") & rows["cfg.dtype"].isin(list(dtypes))]
    size = _numeric(rows, "label.m")
    rows = rows[(size == _numeric(rows, "label.k")) & (size == _numeric(rows, "label.n"))].assign(size=size)
    steps, names = [], []
    for (hardware, dtype), runs in rows.groupby(["hardware", "cfg.dtype"]):
        sizes = sorted(runs["size"].unique())
        if len(sizes) < 2:
            continue
        small = Arm.of("small", runs[runs["size"] == sizes[0]], f"% of peak at {int(sizes[0])}^3", unit="%")
        large = Arm.of("large", runs[runs["size"] == sizes[-1]], f"% of peak at {int(sizes[-1])}^3", unit="%")
        rises = compare(large, small, low=0.0, noise=noise, min_runs=min_runs)
        reaches = threshold(large, low=min_pct, noise=noise, min_runs=min_runs)
        steps.append(combine([rises, reaches]))
        names.append(f"{dtype} on {hardware}")
    if not steps:
        return inconclusive(TOO_FEW_RUNS, "no dtype ran at two square shapes", run_ids=gemm.run_ids)
    return combine(steps, names)


# ------------------------------------------------------------------------------- training and sweeps
def _per_run(arm: Arm, column: str) -> pd.Series:
    """The value of `column` of each run of the arm (its first row)."""
    return arm.rows.groupby("id")[column].first()


def _groups(arm: Arm, column: str, order: Sequence | None) -> list[tuple[object, Arm]]:
    """The arm split by the values of `column`: in `order` when given, else sorted."""
    keys = arm.rows[column]
    present = list(dict.fromkeys(keys.dropna()))
    values = [v for v in order if str(v) in map(str, present)] if order else sorted(present)
    return [(v, arm.subset(keys.astype(str) == str(v), f"{column.split('.')[-1]}={v}")) for v in values]


@criterion("runs")
def divergence_increases(runs: Arm, *, by: str, order: Sequence, min_runs: int = 4) -> Decision:
    """The share of diverged runs grows from the first to the last value of `by` in `order` (e.g. from the
    most to the fewest bits); noise: two binomial standard errors of the difference of the two shares."""
    status = _per_run(runs, "status")
    groups = _groups(runs, by, order)
    if len(groups) < 2:
        return inconclusive(TOO_FEW_RUNS, f"runs at {len(groups)} value(s) of {by}, needs 2", run_ids=runs.run_ids)
    shares = []
    for value, group in groups:
        ids = group.rows["id"].unique()
        shares.append((value, float((status[ids] == "diverged").mean()), len(ids)))
    numbers = [Number(f"diverged share at {v}", share, runs=n) for v, share, n in shares]
    if any(n < min_runs for _, _, n in shares):
        return inconclusive(TOO_FEW_RUNS, f"needs {min_runs} runs per value of {by}", numbers, runs.run_ids)
    (_, first, n1), (_, last, n2) = shares[0], shares[-1]
    half = 2 * math.sqrt(first * (1 - first) / n1 + last * (1 - last) / n2)
    name = f"diverged share {shares[-1][0]} - {shares[0][0]}"
    text = f"{name} = {last - first:+.3g} (noise +-{half:.2g})"
    spread = math.sqrt(first * (1 - first) + last * (1 - last))
    record = Band(name, last - first, half, spread=spread, units=min(n1, n2), unit_name="runs a format")
    return judge((last - first - half, last - first + half), 0.0, None, text, numbers, runs.run_ids, record)


def _best(group: Arm, x: str, lower_is_better: bool) -> list[tuple[object, Arm]]:
    """The group's arms per value of `x`, best mean first."""
    arms = _groups(group, x, None)
    return sorted(arms, key=lambda item: item[1].mean if lower_is_better else -item[1].mean)


@criterion("runs")
def interior_optimum(
    runs: Arm,
    *,
    x: str,
    lower_is_better: bool = True,
    noise: float = 0.0,
    min_runs: int = 1,
    paired_by: str | None = None,
) -> Decision:
    """The best value of `x` lies strictly between its smallest and largest values: the best interior
    point beats both end points (each step as compare, paired by `paired_by` when given)."""
    arms = _groups(runs, x, None)
    if len(arms) < 3:
        return inconclusive(TOO_FEW_RUNS, f"{len(arms)} value(s) of {x}, needs 3", run_ids=runs.run_ids)
    sign = 1 if lower_is_better else -1
    interior = min((arm for _, arm in arms[1:-1]), key=lambda arm: sign * arm.mean)
    bound = {"low": 0.0} if lower_is_better else {"high": 0.0}
    steps = [
        compare(end, interior, noise=noise, min_runs=min_runs, paired_by=paired_by, **bound)
        for _, end in (arms[0], arms[-1])
    ]
    return combine(steps, [f"{arms[0][1].label} vs {interior.label}", f"{arms[-1][1].label} vs {interior.label}"])


@criterion("runs")
def optimum_moves(
    runs: Arm,
    *,
    x: str,
    by: str,
    expect: str = "increasing",
    order: Sequence | None = None,
    lower_is_better: bool = True,
    noise: float = 0.0,
    paired_by: str | None = None,
) -> Decision:
    """The best value of `x` moves monotonically in the `expect`ed direction (increasing or decreasing) along
    the values of `by` (in `order`, else sorted), from the first to the last; inconclusive when any group's
    best and second best are not separated beyond noise (as in compare, paired by `paired_by` when given)."""
    if expect not in ("increasing", "decreasing"):
        raise ConfigError(f"optimum_moves.expect: invalid value {expect!r}; valid choices: increasing, decreasing")
    best, numbers = [], []
    for value, group in _groups(runs, by, order):
        ranked = _best(group, x, lower_is_better)
        if len(ranked) < 2:
            return inconclusive(TOO_FEW_RUNS, f"{by}={value}: {len(ranked)} value(s) of {x}", numbers, runs.run_ids)
        bound = {"low": 0.0} if lower_is_better else {"high": 0.0}
        margin = compare(ranked[1][1], ranked[0][1], noise=noise, paired_by=paired_by, **bound)
        if margin.verdict != CONFIRMED:
            text = f"{by}={value}: best {x} {ranked[0][0]} not separated from {ranked[1][0]}: {margin.test}"
            bands = [b.named(f"{by}={value}: ") for b in margin.bands]
            return inconclusive(WITHIN_NOISE, text, numbers, runs.run_ids, bands)
        best.append(float(ranked[0][0]))
        numbers.append(Number(f"best {x} at {by}={value}", best[-1], runs=group.runs))
    if len(best) < 2:
        return inconclusive(TOO_FEW_RUNS, f"{len(best)} value(s) of {by}, needs 2", numbers, runs.run_ids)
    steps = np.diff(best) * (1 if expect == "increasing" else -1)
    text = f"best {x} along {by}: {', '.join(fmt(b) for b in best)}; claimed {expect}"
    if (steps >= 0).all() and steps.sum() > 0:
        return Decision(CONFIRMED, text, "", tuple(numbers), runs.run_ids)
    if (steps <= 0).all() and steps.sum() < 0:
        return Decision(REFUTED, text, "", tuple(numbers), runs.run_ids)
    return inconclusive(WITHIN_NOISE, text + " (not monotone, or unchanged)", numbers, runs.run_ids)


def _joined(*arms: Arm) -> pd.DataFrame:
    """The arms' per-run values side by side (runs present in all)."""
    return pd.concat([a.values.rename(a.name) for a in arms], axis=1, join="inner")


@criterion("x", "y")
def slope(x: Arm, y: Arm, *, low: float | None = None, high: float | None = None, min_runs: int = 3) -> Decision:
    """The log-log slope of y against x over runs (least squares) lies in (low, high); noise: two standard
    errors of the slope."""
    data = np.log(_joined(x, y))
    if len(data) < min_runs:
        short = Band(f"runs with both {x.label} and {y.label}", math.nan, math.nan, units=len(data), needs=min_runs)
        return inconclusive(
            TOO_FEW_RUNS,
            f"{len(data)} runs with both {x.label} and {y.label}, needs {min_runs}",
            run_ids=_run_ids(x, y),
            bands=[short],
        )
    fit = np.polyfit(data[x.name], data[y.name], 1, cov=len(data) > 3)
    value, error = (fit[0][0], math.sqrt(fit[1][0, 0])) if len(data) > 3 else (fit[0], 0.0)
    text = f"slope of log {y.label} on log {x.label} = {fmt(value)} (noise +-{2 * error:.2g})"
    spread = error * math.sqrt(len(data)) if len(data) > 3 else math.nan  # the slope's error falls as 1/sqrt(runs)
    record = Band(f"slope of log {y.label} on log {x.label}", value, 2 * error, spread=spread, units=len(data))
    return judge(
        (value - 2 * error, value + 2 * error),
        low,
        high,
        text,
        [Number("slope", value, runs=len(data))],
        _run_ids(x, y),
        record,
    )


@criterion("y", "x", "alternative")
def tracks_better(y: Arm, x: Arm, alternative: Arm, *, margin: float = 0.02, min_runs: int = 3) -> Decision:
    """log y correlates with log x more than with log alternative, by more than `margin` in Pearson's r."""
    data = np.log(_joined(y, x, alternative))
    if len(data) < min_runs:
        return inconclusive(
            TOO_FEW_RUNS, f"{len(data)} runs with all three, needs {min_runs}", run_ids=_run_ids(y, x, alternative)
        )
    r_x, r_alt = data[y.name].corr(data[x.name]), data[y.name].corr(data[alternative.name])
    numbers = [
        Number(f"r with {x.label}", r_x, runs=len(data)),
        Number(f"r with {alternative.label}", r_alt, runs=len(data)),
    ]
    text = f"r(log {y.label}, log {x.label}) - r(.., log {alternative.label}) = {r_x - r_alt:+.3g} (noise +-{margin})"
    name = f"r(log {y.label}, log {x.label}) - r(.., log {alternative.label})"
    record = Band(name, r_x - r_alt, margin, units=len(data), floor=margin)
    band = (r_x - r_alt - margin, r_x - r_alt + margin)
    return judge(band, 0.0, None, text, numbers, _run_ids(y, x, alternative), record)


# ------------------------------------------------------------------------------- identified fits
@criterion("value", "terms")
def identified_fit(
    value: Arm,
    terms: Arm,
    *,
    low: float | None = None,
    high: float | None = None,
    noise: float = 0.0,
    min_runs: int = 1,
) -> Decision:
    """A fit's quality (`value`, e.g. its R^2) lies in (low, high), and the runs identify every parameter that
    `terms` reads (fit_parameter rows whose label.identified is true, tradeoffs.fit.identify).

    A parameter that is not identified (its variable spans too few decades or values, or its bootstrap
    interval reaches 0 or a bound) leaves the part inconclusive with the fit's own reason, whatever the
    quality: a law is never confirmed, nor refuted, by R^2 alone. Too few runs when the ladder lacks the
    span; within noise when an interval reaches 0 although the span suffices."""
    quality = threshold(value, low=low, high=high, noise=noise, min_runs=min_runs)
    rows = terms.rows
    if "label.identified" not in rows:
        test = f"{quality.test}; the fit's rows carry no label.identified (a fit made before identification)"
        return inconclusive(TOO_FEW_RUNS, test, quality.numbers, _run_ids(value, terms), quality.bands)
    unidentified = rows[rows["label.identified"].map(lambda flag: flag is not True and flag != 1)]
    identified = float(len(rows) - len(unidentified))
    numbers = (*quality.numbers, Number("parameters identified", identified, runs=len(rows)))
    if unidentified.empty:
        return dataclasses.replace(quality, numbers=numbers)
    texts = unidentified["label.identification"].fillna("").astype(str)
    why = "; ".join(
        f"{text or 'no reason given'} ({', '.join(map(str, group['label.parameter']))})"
        for text, group in unidentified.groupby(texts, sort=False)
    )
    short_span = texts.str.contains(r" (?:spans|takes) ", regex=True).any()  # the runs' coverage, not noise
    reason = TOO_FEW_RUNS if short_span or not texts.str.contains("interval").any() else WITHIN_NOISE
    test = f"{quality.test}; not identified: {why}"
    return inconclusive(reason, test, numbers, _run_ids(value, terms), quality.bands)


@criterion(ordered=True)
def not_decidable_here(*arms: Arm, reason: str) -> Decision:
    """Never decided by this pipeline: the evidence the part needs (`reason`: e.g. FPGA synthesis results) is not
    something these runs measure, so the part is inconclusive (hardware absent) whatever they show; the reads are
    quoted as context."""
    numbers = [arm.number() for arm in arms if arm.runs]
    return inconclusive(HARDWARE_ABSENT, f"not decidable here: {reason}", numbers, _run_ids(*arms))


__all__ = ["CRITERIA", "INCONCLUSIVE", "Arm", "Criterion", "criterion", "evaluate"]
