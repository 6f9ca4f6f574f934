"""Verdicts of the claims from the tidy results table: each part's reads are selected, the reasons a part
cannot be judged (its study did not run, its runs failed, were unsupported or are missing) are found before
its criterion runs, and `across` parts are judged per group."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import pandas as pd

from tradeoffs.report.claims.criteria import Arm, evaluate
from tradeoffs.report.claims.select import select_rows, studies_present
from tradeoffs.report.claims.spec import STATUSES, Claim, Part, Read
from tradeoffs.report.claims.stability import checked_timing, timing_metrics
from tradeoffs.report.claims.verdicts import (
    FIT_FAILED,
    HARDWARE_ABSENT,
    NOT_IN_SUITE,
    RUNS_FAILED,
    ClaimVerdict,
    Decision,
    Number,
    PartVerdict,
    combine,
    inconclusive,
)
from tradeoffs.report.common import no_successful_runs, without_success


def _where_text(where: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in where.items()) or "any configuration"


def _label(read: Read, shared: dict) -> str:
    """A read's name in the report: its label, else its own filter values (those its part does not share)."""
    if read.label:
        return read.label
    own = [str(v) for k, v in read.where.items() if shared.get(k) != v]
    return ", ".join(own) or read.name


REASON_LABELS = ("label.estimate_reason", "label.fit_reason")  # a derived value's own account of a NaN


def _stated_reasons(rows: pd.DataFrame) -> str:
    """': <reasons>' that rows give for their NaN values (a fit that did not converge says why), or ''."""
    for column in REASON_LABELS:
        if column in rows:
            reasons = [r for r in rows[column].dropna().astype(str).unique() if r]
            if reasons:
                return ": " + "; ".join(reasons[:3])
    return ""


def select_arm(results: pd.DataFrame, read: Read, present: set[str], shared: dict) -> Arm | Decision:
    """The read's rows as an Arm, or the inconclusive decision saying why there are none."""
    if read.study not in present:
        return inconclusive(NOT_IN_SUITE, f"study '{read.study}' did not run in this suite")
    rows = select_rows(results, read.study, read.metric, read.where, read.statuses)
    if rows["metric"].isna().all() and without_success(results, [read.study]):
        runs = select_rows(results, read.study, (), {}, STATUSES).drop_duplicates("id")
        reason = HARDWARE_ABSENT if set(runs["status"]) == {"unsupported"} else RUNS_FAILED
        return inconclusive(reason, no_successful_runs(results, read.study), run_ids=runs["id"])
    missing = [c for c in [*read.where, *([read.at_max] if read.at_max else [])] if c not in results]
    if missing:
        return inconclusive(NOT_IN_SUITE, f"runs of study '{read.study}' have no column {missing}")
    if read.at_max and len(rows):
        column = pd.to_numeric(rows[read.at_max], errors="coerce")
        rows = rows[column == column.max()]
    if len(rows):
        arm = Arm.of(read.name, rows, _label(read, shared), read.paper, read.unit)
        if read.metric and len(read.metric) == 1 and not arm.runs:
            stated = _stated_reasons(rows)
            test = f"{read.metric[0]} is NaN in every run{stated}"
            return inconclusive(FIT_FAILED if stated else RUNS_FAILED, test, run_ids=arm.run_ids)
        return arm
    config = {k: v for k, v in read.where.items() if k.startswith("cfg.")}
    others = [s for s in STATUSES if s not in read.statuses]
    failed = select_rows(results, read.study, (), config, others).drop_duplicates("id")
    if len(failed):
        reason = HARDWARE_ABSENT if set(failed["status"]) == {"unsupported"} else RUNS_FAILED
        messages = "; ".join(f"{r.id}: {r.status} {r.message}".strip() for r in failed.head(3).itertuples())
        return inconclusive(reason, messages, run_ids=failed["id"])
    what = f" has {'/'.join(read.metric)} rows" if read.metric else ""
    return inconclusive(NOT_IN_SUITE, f"no run of study '{read.study}' with {_where_text(read.where)}{what}")


def _decide(results: pd.DataFrame, part: Part, present: set[str]) -> Decision:
    shared = dict(part.reads[0].where) if part.reads else {}
    for read in part.reads[1:]:
        shared = {k: v for k, v in shared.items() if read.where.get(k) == v}
    arms = {read.name: select_arm(results, read, present, shared) for read in part.reads}
    judged = [arms[r.name] for r in part.judged]
    if any(isinstance(a, Decision) for a in judged):
        return _unjudged(part, arms, shared)
    decision = evaluate(part.criterion, judged, dict(part.params))
    shown = tuple(arm.number() for r in part.reads if r.show and isinstance(arm := arms[r.name], Arm))
    return dataclasses.replace(decision, numbers=decision.numbers + shown) if shown else decision


def _unjudged(part: Part, arms: dict[str, Arm | Decision], shared: dict) -> Decision:
    """Why a part with missing reads cannot be judged, with the numbers of the reads that are there and the
    paper's numbers of those that are not."""
    decision = combine([arms[r.name] for r in part.judged if isinstance(arms[r.name], Decision)])
    present = [a for a in arms.values() if isinstance(a, Arm)]
    numbers = [a.number() for a in present]
    numbers += [
        Number(_label(r, shared), math.nan, r.paper, r.unit, 0)
        for r in part.reads
        if isinstance(arms[r.name], Decision) and r.paper is not None
    ]
    run_ids = sorted({*decision.run_ids, *(i for a in present for i in a.run_ids)})
    return dataclasses.replace(decision, numbers=tuple(numbers), run_ids=tuple(run_ids))


def _group_values(results: pd.DataFrame, part: Part, column: str, present: set[str]) -> list:
    """The values of an `across` column: the list its judged reads' filter gives, else those the runs have."""
    listed = next((r.where[column] for r in part.judged if isinstance(r.where.get(column), list | tuple)), None)
    if listed is not None:
        return list(listed)
    read = part.judged[0]
    if read.study not in present or column not in results:
        return []
    rows = select_rows(
        results, read.study, read.metric, {k: v for k, v in read.where.items() if k != column}, read.statuses
    )
    return sorted(rows[column].dropna().unique(), key=str)


def decide_part(results: pd.DataFrame, part: Part, present: set[str] | None = None) -> Decision:
    """The decision of one part of a claim, from the tidy table alone; a part decided from wall-clock timings
    is unstable where its band is too wide or lacks fresh-process repeats (tradeoffs.report.claims.stability)."""
    present = studies_present(results) if present is None else present
    return checked_timing(_decide_groups(results, part, present), timing_metrics(results, part))


def _decide_groups(results: pd.DataFrame, part: Part, present: set[str]) -> Decision:
    """The part's decision, judged per group of its `across` columns and combined."""
    if not part.across:
        return _decide(results, part, present)
    groups = list(itertools.product(*(_group_values(results, part, c, present) for c in part.across)))
    if not groups:
        return _decide(results, part, present)  # nothing to split: say why the reads are empty
    decisions, names = [], []
    for values in groups:
        narrowed = dict(zip(part.across, values, strict=True))
        reads = tuple(dataclasses.replace(r, where={**r.where, **narrowed}) for r in part.reads)
        decisions.append(_decide(results, dataclasses.replace(part, reads=reads, across=()), present))
        names.append(", ".join(map(str, values)))
    return combine(decisions, names)


def evaluate_claims(results: pd.DataFrame, claims: Sequence[Claim]) -> list[ClaimVerdict]:
    """Every claim's verdict, part by part."""
    present = studies_present(results) if len(results) else set()
    return [
        ClaimVerdict(
            claim.id, tuple(PartVerdict(claim.id, p.id, decide_part(results, p, present)) for p in claim.parts)
        )
        for claim in claims
    ]


__all__ = ["Number", "decide_part", "evaluate_claims", "select_arm"]
