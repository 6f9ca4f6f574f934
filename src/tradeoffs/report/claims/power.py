"""Stated power: for an undecided part, the effect it measured, its noise band and the smallest change that
would decide it, computed from the bands its criterion judged (tradeoffs.report.claims.verdicts.Band).

A band from runs shrinks with their number n as quantile x spread / sqrt(n) (the quantile is Student-t's at
n - 1 degrees of freedom for paired comparisons, 2 for two standard errors), never below its fixed resolution
(`floor`). A band is decided once it no longer straddles a bound of the claimed range, so the count needed is
the smallest n whose half-width is below the distance from the measured value to the nearest bound, on the
assumption that the measured effect and spread stay as they are. Where no count can do it (the resolution is
wider than that distance, or the effect sits on the bound), the lever is a larger effect: more training steps
or a larger model for training runs, a finer measurement otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from tradeoffs.report.claims.criteria import fmt
from tradeoffs.report.claims.verdicts import CONFIRMED, REFUTED, Band

MAX_UNITS = 1000  # counts beyond this are reported as out of reach, not as a number to run


@dataclass(frozen=True)
class Projection:
    """What one undecided band needs: `units` runs or pairs (None: no count decides it) and the verdict the
    measured value would then give."""

    band: Band
    units: int | None
    verdict: str
    why: str


def _log(band: Band, value: float | None) -> float | None:
    if value is None:
        return None
    if not band.log:
        return value
    return math.log(value) if value > 0 else -math.inf


def distance(band: Band) -> float:
    """How far the measured value lies from the nearest bound of the claimed range (in log space for a
    ratio): the half-width a band must fall below to decide."""
    value = _log(band, band.value)
    bounds = [b for b in (_log(band, band.low), _log(band, band.high)) if b is not None]
    if value is None or math.isnan(value) or not bounds:
        return math.nan
    return min(abs(value - b) for b in bounds)


def inside(band: Band) -> bool:
    """Whether the measured value lies inside the claimed range (the verdict a narrow enough band gives)."""
    return (band.low is None or band.value > band.low) and (band.high is None or band.value < band.high)


def width(band: Band, half: float) -> str:
    """A half-width as the report writes it: a percentage for a ratio's (log) band, +- otherwise."""
    return f"+-{100 * math.expm1(half):.2g}%" if band.log else f"+-{fmt(half)}"


def half_width(band: Band, units: int) -> float:
    """The band's half-width with `units` runs or pairs, its spread as measured."""
    quantile = float(stats.t.ppf(0.975, units - 1)) if band.student_t else 2.0
    return max(band.floor, quantile * band.spread / math.sqrt(units))


def project(band: Band) -> Projection:
    """The smallest count of runs (pairs) that would decide `band`, from its measured spread."""
    verdict = CONFIRMED if inside(band) else REFUTED
    if band.needs > band.units:
        return Projection(band, band.needs, "", f"the criterion needs {band.needs} {band.unit_name}")
    gap = distance(band)
    if math.isnan(gap):
        return Projection(band, None, "", "no measured value")
    if gap == 0:
        return Projection(band, None, "", "the measured value sits on the claimed bound (no effect measured)")
    if gap <= band.floor:
        why = f"its resolution {width(band, band.floor)} is not below the distance {width(band, gap)[2:]} to the bound"
        return Projection(band, None, verdict, why)
    if band.interval:
        why = "the band is an interval the rows carry (a fit's bootstrap): more runs over a wider range narrow it"
        return Projection(band, None, verdict, why)
    if not band.spread >= 0:  # NaN: fewer than two runs on a side
        return Projection(band, None, verdict, "its spread is unknown: at least 2 runs on each side size it")
    if band.spread == 0:
        return Projection(band, 2, verdict, "the runs agree exactly")
    for units in range(2, MAX_UNITS + 1):
        if half_width(band, units) < gap:
            return Projection(band, max(units, band.units + 1), verdict, "")
    return Projection(band, None, verdict, f"more than {MAX_UNITS} {band.unit_name} would be needed")


def undecided(bands: Sequence[Band]) -> list[Band]:
    """The bands that straddle a bound of their claimed range (or lack the runs their criterion needs)."""
    out = []
    for band in bands:
        if band.needs > band.units:
            out.append(band)
        elif band.low is not None or band.high is not None:
            gap = distance(band)
            if math.isnan(gap) or gap <= band.half or not band.half >= 0:
                out.append(band)
    return out


def _count(units: int, unit_name: str) -> str:
    return f"1 run{unit_name[4:]}" if units == 1 and unit_name.startswith("runs") else f"{units} {unit_name}"


def effect_text(band: Band) -> str:
    """'name = value (band +-half from n runs)' as the report states a measured effect."""
    if math.isnan(band.value):
        return f"{band.name}: {_count(band.units, band.unit_name)}"
    where = f" from {_count(band.units, band.unit_name)}" if band.units else ""
    claimed = []
    if band.low is not None:
        claimed.append(f"> {fmt(band.low)}")
    if band.high is not None:
        claimed.append(f"< {fmt(band.high)}")
    claim = " and ".join(claimed) or "-"
    value = f"{band.value:.6g}" if band.log else fmt(band.value)
    return f"{band.name} = {value} (band {width(band, band.half)}{where}; claimed {claim})"


def _change(projection: Projection, lever: str) -> str:
    band = projection.band
    if projection.units is not None:
        more = projection.units - band.units
        what = f"{projection.units} {band.unit_name} ({more} more)" if more > 0 else f"{projection.units}"
        if band.needs > band.units:
            return f"{what} let the criterion judge it ({projection.why})"
        then = f", which would give {projection.verdict}" if projection.verdict else ""
        reason = f" ({projection.why})" if projection.why else ""
        return f"{what} would decide it{then}{reason}"
    return f"no count of {band.unit_name} decides it: {projection.why}; {lever}"


def power_lines(bands: Sequence[Band], lever: str) -> list[str]:
    """One line per undecided band: its effect, band and the smallest change that decides it; a last line with
    the part's smallest change (a refuting band decides the part alone, else every band must decide)."""
    projections = [project(b) for b in undecided(bands)]
    lines = [f"{effect_text(p.band)}: {_change(p, lever)}" for p in projections]
    if len(projections) > 1:
        counted = [p for p in projections if p.units is not None]
        refuting = [p for p in counted if p.verdict == REFUTED]
        if refuting:
            best = min(refuting, key=lambda p: p.units or 0)
            lines.append(f"the part: {best.units} {best.band.unit_name} (its first refuting comparison)")
        elif len(counted) == len(projections):
            worst = max(counted, key=lambda p: p.units or 0)
            lines.append(f"the part: {worst.units} {worst.band.unit_name} (every comparison must decide)")
    return lines
