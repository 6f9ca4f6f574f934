"""Verdicts and their evidence: what a criterion decides, with the numbers it compared, the test it applied
(threshold and noise), the noise bands it judged and the runs it read; and how the verdicts of parts combine
into a claim's."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

CONFIRMED, REFUTED, INCONCLUSIVE = "confirmed", "refuted", "inconclusive"
VERDICTS = (CONFIRMED, REFUTED, INCONCLUSIVE)

# Why a verdict is inconclusive.
NOT_IN_SUITE = "not in this suite"
TOO_FEW_RUNS = "too few runs"
WITHIN_NOISE = "within noise"
HARDWARE_ABSENT = "hardware absent"
RUNS_FAILED = "runs failed or diverged"
FIT_FAILED = "fit failed"  # a derived value (a fit, an estimate) that its rows say could not be computed
UNSTABLE = "unstable"  # a timing whose band is too wide, or has too few fresh-process repeats, to decide
REASONS = (NOT_IN_SUITE, TOO_FEW_RUNS, WITHIN_NOISE, HARDWARE_ABSENT, RUNS_FAILED, FIT_FAILED, UNSTABLE)


@dataclass(frozen=True)
class Number:
    """One of our numbers behind a verdict, with the paper's where it quotes one and the runs it pools."""

    name: str
    ours: float
    paper: float | None = None
    unit: str = ""
    runs: int = 1


@dataclass(frozen=True)
class Band:
    """The noise band one comparison was judged against, and what it was computed from: the measured `value`
    (a difference, ratio or mean) +- `half` (of log values with `log`), the claimed range (`low`, `high`),
    and, where runs gave it, the spread of one run or pair (`spread`: half = quantile x spread / sqrt(units),
    the quantile Student-t's with `student_t`, else 2) over `units` runs or pairs, never below the fixed
    resolution `floor`. `level` is the magnitude of the measured quantity (a timing's band is judged against
    it); `needs` is the count of runs or pairs a criterion requires where it had fewer; `interval` marks a band
    the rows carry (a fit's bootstrap interval) rather than one computed over runs."""

    name: str
    value: float
    half: float
    low: float | None = None
    high: float | None = None
    log: bool = False
    spread: float = math.nan
    units: int = 0
    unit_name: str = "runs"
    student_t: bool = False
    floor: float = 0.0
    level: float = math.nan
    needs: int = 0
    interval: bool = False

    def named(self, prefix: str) -> Band:
        return replace(self, name=f"{prefix}{self.name}") if prefix else self


@dataclass(frozen=True)
class Decision:
    """A verdict with its evidence. `test` states the comparison made, with its threshold and noise, in
    numbers; `reason` (one of REASONS) says why an inconclusive verdict is one; `bands` are the noise bands
    it judged (the power statement and the comparison of two runs read them)."""

    verdict: str
    test: str
    reason: str = ""
    numbers: tuple[Number, ...] = ()
    run_ids: tuple[str, ...] = ()
    bands: tuple[Band, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")
        if (self.verdict == INCONCLUSIVE) != bool(self.reason) or (self.reason and self.reason not in REASONS):
            raise ValueError(f"an inconclusive verdict, and only one, needs a reason of {REASONS}: {self}")


def inconclusive(
    reason: str,
    test: str,
    numbers: Sequence[Number] = (),
    run_ids: Iterable[str] = (),
    bands: Sequence[Band] = (),
) -> Decision:
    """An inconclusive decision for `reason` (one of REASONS)."""
    return Decision(INCONCLUSIVE, test, reason, tuple(numbers), tuple(sorted(set(run_ids))), tuple(bands))


def combined_verdict(decisions: Sequence[Decision]) -> tuple[str, str]:
    """(verdict, reason) of a conjunction: refuted if any part is, confirmed if every part is, else
    inconclusive with the reasons of the undecided parts."""
    verdicts = [d.verdict for d in decisions]
    if REFUTED in verdicts:
        return REFUTED, ""
    if verdicts and all(v == CONFIRMED for v in verdicts):
        return CONFIRMED, ""
    reasons = [d.reason for d in decisions if d.verdict == INCONCLUSIVE]
    return INCONCLUSIVE, "; ".join(dict.fromkeys(reasons)) if reasons else TOO_FEW_RUNS


def combine(decisions: Sequence[Decision], names: Sequence[str] | None = None) -> Decision:
    """One decision from several (the groups of a part, the steps of a chain), each test and number
    prefixed by its name."""
    if len(decisions) == 1 and not names:
        return decisions[0]
    names = names or [""] * len(decisions)
    verdict, reason = combined_verdict(decisions)
    if verdict == INCONCLUSIVE and reason not in REASONS:  # several reasons: the first undecided part's
        reason = next(d.reason for d in decisions if d.verdict == INCONCLUSIVE)
    prefix = [f"{name}: " if name else "" for name in names]
    test = "; ".join(dict.fromkeys(f"{p}{d.test}" for p, d in zip(prefix, decisions, strict=True)))
    numbers = tuple(
        Number(f"{p}{n.name}", n.ours, n.paper, n.unit, n.runs)
        for p, d in zip(prefix, decisions, strict=True)
        for n in d.numbers
    )
    run_ids = tuple(sorted({i for d in decisions for i in d.run_ids}))
    bands = tuple(b.named(p) for p, d in zip(prefix, decisions, strict=True) for b in d.bands)
    return Decision(verdict, test, reason, numbers, run_ids, bands)


@dataclass(frozen=True)
class PartVerdict:
    claim: str
    part: str
    decision: Decision


@dataclass(frozen=True)
class ClaimVerdict:
    claim: str
    parts: tuple[PartVerdict, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        return combined_verdict([p.decision for p in self.parts])[0]

    @property
    def reason(self) -> str:
        return combined_verdict([p.decision for p in self.parts])[1]
