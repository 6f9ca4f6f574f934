"""Stable verdicts, checked: the parts whose verdict differs between two results tables (two runs of one suite,
two machines, two commits) and why, each with the comparisons that moved and by how much against their noise
bands, and the reads whose values changed (`python -m tradeoffs claims A.parquet --against B.parquet`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from tradeoffs.report.claims.criteria import fmt
from tradeoffs.report.claims.engine import evaluate_claims
from tradeoffs.report.claims.spec import Claim
from tradeoffs.report.claims.stability import VARYING_METRICS, timing_metrics
from tradeoffs.report.claims.verdicts import UNSTABLE, Band, ClaimVerdict, Decision

SHOWN = 4  # moved comparisons and reads listed per part


def verdict_label(decision: Decision) -> str:
    """The verdict as the report marks it: 'unstable' for an unstable timing, the reason of any other
    inconclusive one in parentheses."""
    if decision.reason == UNSTABLE:
        return "unstable"
    return decision.verdict + (f" ({decision.reason})" if decision.reason else "")


@dataclass(frozen=True)
class Difference:
    """One part whose verdict differs between the tables, the timing or measured-memory metrics it reads (which
    move between identical runs), and why."""

    claim: str
    part: str
    first: str
    second: str
    timing: tuple[str, ...]
    why: tuple[str, ...]

    def lines(self) -> list[str]:
        """The difference as printed: a headline, then one indented line per moved comparison or read."""
        timing = f" [timing: {', '.join(self.timing)}]" if self.timing else ""
        return [f"{self.claim}/{self.part}{timing}: {self.first} -> {self.second}", *(f"  {w}" for w in self.why)]


def _shift(first: Band, second: Band) -> tuple[float, str]:
    """How far a band's value moved, in units of the wider of its two half-widths, and the sentence."""
    if first.log:
        moved = math.log(second.value / first.value) if first.value > 0 and second.value > 0 else math.nan
        text = f"x{fmt(math.exp(moved))}" if moved == moved else "undefined"
        bands = f"x{fmt(math.exp(first.half))} and x{fmt(math.exp(second.half))}"
    else:
        moved = second.value - first.value
        text, bands = f"{moved:+.4g}", f"+-{fmt(first.half)} and +-{fmt(second.half)}"
    width = max(first.half, second.half)
    ratio = abs(moved) / width if width > 0 else (math.inf if moved else 0.0)
    where = "beyond its band" if ratio > 1 else "within its band"
    return ratio, f"{first.name}: {fmt(first.value)} -> {fmt(second.value)} (moved {text}; bands {bands}: {where})"


def explain(first: Decision, second: Decision) -> list[str]:
    """The comparisons (bands) and reads (numbers) that moved between two decisions of one part, largest move
    against its band first; bands present in one decision only are named as such."""
    why: list[tuple[float, str]] = []
    bands = {b.name: b for b in second.bands}
    for band in first.bands:
        other = bands.pop(band.name, None)
        if other is None:
            why.append((math.inf, f"{band.name}: judged only in the first table"))
        elif not (band.value == other.value and band.half == other.half):
            why.append(_shift(band, other))
    why += [(math.inf, f"{name}: judged only in the second table") for name in bands]
    why.sort(key=lambda item: -item[0] if item[0] == item[0] else 0)
    lines = [text for _, text in why[:SHOWN]]
    numbers = {n.name: n for n in second.numbers}
    moved, seen = [], set()
    for number in first.numbers:
        other = numbers.get(number.name)
        if number.name in seen or other is None or number.ours == other.ours:
            continue
        if math.isnan(number.ours) and math.isnan(other.ours):
            continue
        seen.add(number.name)
        scale = max(abs(number.ours), abs(other.ours)) or 1.0
        moved.append((abs(other.ours - number.ours) / scale, number.name, number.ours, other.ours))
    moved.sort(key=lambda item: -item[0] if item[0] == item[0] else 0)
    lines += [f"read {name}: {fmt(a)} -> {fmt(b)}" for _, name, a, b in moved[:SHOWN]]
    if first.test != second.test and not lines:
        lines.append(f"test: {first.test} -> {second.test}")
    return lines


def differences(
    claims: Sequence[Claim],
    first: Sequence[ClaimVerdict],
    second: Sequence[ClaimVerdict],
    timing: dict[tuple[str, str], tuple[str, ...]] | None = None,
) -> list[Difference]:
    """Every part whose verdict (or unstable mark, or inconclusive reason) differs between two evaluations of
    `claims`; `timing` names the timing and measured-memory metrics each (claim, part) reads."""
    by_id = [{v.claim: {p.part: p.decision for p in v.parts} for v in verdicts} for verdicts in (first, second)]
    out = []
    for claim in claims:
        for part in claim.parts:
            a, b = by_id[0][claim.id][part.id], by_id[1][claim.id][part.id]
            if verdict_label(a) != verdict_label(b):
                metrics = (timing or {}).get((claim.id, part.id), ())
                out.append(
                    Difference(claim.id, part.id, verdict_label(a), verdict_label(b), metrics, tuple(explain(a, b)))
                )
    return out


def compare_tables(first: pd.DataFrame, second: pd.DataFrame, claims: Sequence[Claim]) -> list[Difference]:
    """The parts whose verdict differs between two results tables."""
    timing = {
        (c.id, p.id): tuple(
            dict.fromkeys([*timing_metrics(first, p, VARYING_METRICS), *timing_metrics(second, p, VARYING_METRICS)])
        )
        for c in claims
        for p in c.parts
    }
    return differences(claims, evaluate_claims(first, claims), evaluate_claims(second, claims), timing)


def differences_text(found: Sequence[Difference], parts: int, first: str, second: str) -> str:
    """The printed comparison: every differing part with why, then the count (timings apart)."""
    lines = [line for difference in found for line in difference.lines()]
    timing = sum(bool(d.timing) for d in found)
    summary = (
        f"{len(found)} of {parts} parts differ between {first} and {second}"
        f" ({timing} read timings or measured memory, {len(found) - timing} do not)"
    )
    return "\n".join([*lines, summary])
