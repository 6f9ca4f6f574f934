"""Whether the runs identify each parameter of a law, before its value is believed.

A term of a law (A / N^alpha, B / D^beta) is identified when its variable takes at least MIN_VALUES distinct
values spanning at least `min_decades` decades (two sizes give one contrast for a prefactor and an exponent;
less than a decade lets the exponent trade against E and the other term) and the bootstrap interval of its
exponent excludes 0 and stays inside the optimiser's bounds. A parameter is identified when every term it
belongs to is, and its own interval (where it has one) stays inside its bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from tradeoffs.fit.result import OK, Estimate

MIN_VALUES = 3  # distinct values of a term's variable: a prefactor and an exponent need two contrasts


def decades(log_values: np.ndarray) -> float:
    """The range of positive values, given as natural logs, in decades (log10 of max / min)."""
    return float((np.max(log_values) - np.min(log_values)) / math.log(10)) if len(log_values) else math.nan


def coverage_reason(symbol: str, log_values: np.ndarray, min_decades: float) -> str:
    """Why runs with these values of a variable (natural logs) cannot identify its term ('' when they can),
    e.g. 'N spans 0.4 decades (needs 1)'."""
    distinct = len(np.unique(np.round(log_values, 9)))
    if distinct < MIN_VALUES:
        return f"{symbol} takes {distinct} value{'s' * (distinct != 1)} (needs {MIN_VALUES})"
    span = decades(log_values)
    if span < min_decades:
        return f"{symbol} spans {span:.2g} decades (needs {min_decades:g})"
    return ""


def interval_reason(estimate: Estimate, lower: float, upper: float, exponent: bool) -> str:
    """Why an estimate's bootstrap interval does not bound it ('' when it does): no interval, an exponent's
    interval reaching 0, or an interval reaching the optimiser's bound (compared in log space for a
    positive parameter whose bounds span decades)."""
    if estimate.status != OK:
        return estimate.reason or estimate.status
    low, high = estimate.low, estimate.high
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{estimate.name} has no bootstrap interval"
    logged = lower > 0 and upper / lower > 1e3
    scale = (lambda v: math.log(max(v, 1e-300))) if logged else (lambda v: v)
    tolerance = 1e-3 * (scale(upper) - scale(lower))
    span = f"{estimate.name}'s interval {low:.3g}..{high:.3g}"
    if scale(low) <= scale(lower) + tolerance:
        return f"{span} includes 0" if exponent and lower <= 0 else f"{span} reaches the bound {lower:.3g}"
    if scale(high) >= scale(upper) - tolerance:
        return f"{span} reaches the bound {upper:.3g}"
    return ""


def identify(
    estimates: Sequence[Estimate],
    bounds: Mapping[str, tuple[float, float]],
    exponents: Mapping[str, str],
    memberships: Mapping[str, tuple[str, ...]],
    coverage: Mapping[str, str],
    shared: Sequence[Estimate] = (),
) -> list[Estimate]:
    """The estimates with `identified` and `identification` set. `bounds` are each parameter's optimiser
    bounds (natural units); `exponents` maps a term (N, D) to its exponent's name, looked up among
    `estimates` and `shared`; `memberships` maps a parameter to the terms it belongs to; `coverage` maps a
    term to its coverage_reason."""
    by_name = {e.name: e for e in (*shared, *estimates)}
    terms = {}
    for term, name in exponents.items():
        unbounded = (-math.inf, math.inf)
        own = interval_reason(by_name[name], *bounds.get(name, unbounded), True) if name in by_name else "no estimate"
        terms[term] = coverage.get(term, "") or own
    out = []
    for estimate in estimates:
        reasons = [f"{t} term not identified: {terms[t]}" for t in memberships.get(estimate.name, ()) if terms[t]]
        if estimate.name in bounds and estimate.name not in exponents.values():
            own = interval_reason(estimate, *bounds[estimate.name], exponent=False)
            reasons += [own] if own else []
        elif estimate.status != OK and not reasons:
            reasons.append(estimate.reason or estimate.status)
        text = "; ".join(dict.fromkeys(reasons))
        out.append(replace(estimate, identified=not text, identification=text))
    return out
