"""reports/claims.md (per paper: each claim, its parts' criteria, our numbers beside the paper's, verdicts,
the suite that decided them, what would decide the undecided ones and run ids, for a reader who never opens
the code) and reports/tables/claims.csv (one row per part)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from tradeoffs.report.claims.advice import advice, larger_suite_summary, suites_of
from tradeoffs.report.claims.criteria import CRITERIA, fmt
from tradeoffs.report.claims.spec import Claim, Part
from tradeoffs.report.claims.stability import timing_metrics
from tradeoffs.report.claims.verdicts import INCONCLUSIVE, UNSTABLE, VERDICTS, ClaimVerdict, Decision, Number

RUNS_SHOWN = 6  # run ids listed per part in the Markdown; the CSV lists all


def _counts(verdicts: Sequence[str]) -> str:
    counts = Counter(verdicts)
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])


def summary_line(verdicts: Sequence[ClaimVerdict]) -> str:
    """'17 claims: 5 confirmed, 1 refuted, 11 inconclusive (9 not in this suite, ...); 40 parts: ...', an
    inconclusive claim counted under the reason of its first undecided part."""
    reasons = Counter(v.reason.split("; ")[0] for v in verdicts if v.reason)
    why = f" ({', '.join(f'{n} {r}' for r, n in reasons.most_common())})" if reasons else ""
    parts = [p.decision.verdict for v in verdicts for p in v.parts]
    return (
        f"{len(verdicts)} claims: {_counts([v.verdict for v in verdicts])}{why}; {len(parts)} parts: {_counts(parts)}"
    )


def _number(number: Number) -> str:
    unit = f" {number.unit}" if number.unit else ""
    paper = f" (paper {fmt(number.paper)})" if number.paper is not None else ""
    runs = f" [{number.runs} runs]" if number.runs > 1 else ""
    ours = f"{fmt(number.ours)}{unit}" if number.ours == number.ours else "-"
    return f"{number.name}: {ours}{paper}{runs}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _runs(decision: Decision) -> str:
    ids = [f"`{i}`" for i in decision.run_ids[:RUNS_SHOWN]]
    more = len(decision.run_ids) - RUNS_SHOWN
    return ", ".join(ids) + (f" and {more} more (claims.csv lists all)" if more > 0 else "") if ids else "none"


def _verdict(decision: Decision) -> str:
    if decision.reason == UNSTABLE:
        return "**unstable** (a timing: inconclusive until its repeats agree)"
    return f"**{decision.verdict}**" + (f" ({decision.reason})" if decision.reason else "")


def _rows(results: pd.DataFrame, decision: Decision) -> pd.DataFrame:
    """The table's rows of the runs a decision read."""
    return results[results["id"].isin(decision.run_ids)] if len(results) and decision.run_ids else results.iloc[0:0]


def _suite_text(suites: Sequence[str], rows: pd.DataFrame | None = None) -> str:
    if suites:
        return ", ".join(f"`{s}`" for s in suites)
    if rows is not None and not len(rows):
        return "none (no runs)"
    return "not recorded (a table collected without --suite)"


def _criterion(part: Part) -> str:
    params = ", ".join(f"{k}={v}" for k, v in part.params.items())
    return f"`{part.criterion}`({params}): {CRITERIA[part.criterion].summary}"


def _table_facts(results: pd.DataFrame) -> str:
    if not len(results):
        return "an empty results table"
    studies = sorted(set(results.get("cfg.study", results["kind"]).fillna(results["kind"])))
    commits = sorted(set(results.get("prov.git_commit", pd.Series(dtype=str)).dropna().astype(str).str[:10]))
    ended = results["ended"].dropna().max() if "ended" in results else ""
    suites = suites_of(results)
    facts = f"{results['id'].nunique()} runs of suite {_suite_text(suites)}, studies {', '.join(studies)}"
    return facts + (f"; git {', '.join(commits)}" if commits else "") + (f"; last run ended {ended}" if ended else "")


def claims_markdown(claims: Sequence[Claim], verdicts: Sequence[ClaimVerdict], results: pd.DataFrame) -> str:
    """The claims report as Markdown."""
    by_id = {v.claim: v for v in verdicts}
    lines = [
        "# Paper claims and their verdicts",
        "",
        "Each verdict is computed from the tidy results table by the criterion written next to the claim in "
        "`conf/claims.yaml` (docs/claims.md describes the criteria). A part is confirmed or refuted only when "
        "the effect is larger than its noise (seeds, fresh-process repeats, or a stated measurement "
        "resolution); otherwise it is inconclusive, with the reason. A claim is refuted when one of its parts "
        "is, confirmed when all are. The paper's numbers are quoted beside ours; thresholds were fixed "
        "before the runs, not tuned to them.",
        "",
        f"Table: {_table_facts(results)}.",
        "",
        "## Summary",
        "",
        f"**{summary_line(verdicts)}**",
        "",
        "| claim | paper | verdict | parts |",
        "|---|---|---|---|",
    ]
    for claim in claims:
        verdict = by_id[claim.id]
        parts = _counts([p.decision.verdict for p in verdict.parts])
        reason = f" ({verdict.reason})" if verdict.reason else ""
        lines.append(f"| [{claim.id}](#{claim.id}) | {claim.papers[0]} | **{verdict.verdict}**{reason} | {parts} |")
    lines += _undecided_summary(claims, verdicts, results)
    for paper in dict.fromkeys(c.papers[0] for c in claims):
        lines += ["", f"## {paper}"]
        for claim in (c for c in claims if c.papers[0] == paper):
            lines += _claim_section(claim, by_id[claim.id], results)
    return "\n".join(lines) + "\n"


def _undecided_summary(claims: Sequence[Claim], verdicts: Sequence[ClaimVerdict], results: pd.DataFrame) -> list[str]:
    """The undecided parts in one paragraph, with the larger suite that runs their studies."""
    undecided = [(v.claim, p) for v in verdicts for p in v.parts if p.decision.verdict == INCONCLUSIVE]
    if not undecided:
        return []
    unstable = sum(p.decision.reason == UNSTABLE for _, p in undecided)
    parts = {(c.id, part.id): part for c in claims for part in c.parts}
    studies = [[r.study for r in parts[(claim, p.part)].reads] for claim, p in undecided]
    pointer = larger_suite_summary(suites_of(results), studies)
    marked = f" ({unstable} of them unstable timings)" if unstable else ""
    text = (
        f"{len(undecided)} parts are undecided at this table's scale{marked}; each states below the effect it "
        "measured, its noise band and the smallest change that would decide it"
    )
    return ["", text + (f"; {pointer}." if pointer else ".")]


def _claim_section(claim: Claim, verdict: ClaimVerdict, results: pd.DataFrame) -> list[str]:
    reason = f" ({verdict.reason})" if verdict.reason else ""
    lines = [
        "",
        f'<a id="{claim.id}"></a>',
        "",
        f"### {claim.id}: {verdict.verdict}{reason}",
        "",
        f"> {claim.statement}",
    ]
    if len(claim.papers) > 1:
        lines += ["", f"Papers: {'; '.join(claim.papers)}."]
    if claim.note:
        lines += ["", f"Note: {claim.note}"]
    studies = ", ".join(f"`{s}`" for s in claim.studies)
    lines += ["", f"Studies read: {studies}.", "", "| part | claim | our numbers (paper's) | test | verdict |"]
    lines.append("|---|---|---|---|---|")
    parts = {p.id: p for p in claim.parts}
    for part_verdict in verdict.parts:
        part, decision = parts[part_verdict.part], part_verdict.decision
        numbers = "<br>".join(_cell(_number(n)) for n in decision.numbers) or "-"
        statement = _cell(part.statement + (f" Paper: {part.paper_note}" if part.paper_note else ""))
        lines.append(f"| {part.id} | {statement} | {numbers} | {_cell(decision.test)} | {_verdict(decision)} |")
    lines += ["", "Criteria:"]
    lines += [f"- {part.id}: {_cell(_criterion(part))}" for part in claim.parts]
    table_suites = suites_of(results)
    advised = []
    for part_verdict in verdict.parts:
        rows = _rows(results, part_verdict.decision)
        said = advice(parts[part_verdict.part], part_verdict.decision, rows, table_suites)
        if said:
            advised.append(f"- {part_verdict.part} ({part_verdict.decision.reason}): " + "; ".join(map(_cell, said)))
    if advised:
        lines += ["", "What would decide the undecided parts:", *advised]
    lines += ["", "Runs (and the suite they came from):"]
    for part_verdict in verdict.parts:
        rows = _rows(results, part_verdict.decision)
        lines.append(
            f"- {part_verdict.part}: suite {_suite_text(suites_of(rows), rows)}; {_runs(part_verdict.decision)}"
        )
    return lines


def claims_table(
    claims: Sequence[Claim], verdicts: Sequence[ClaimVerdict], results: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per claim part: verdicts, reason, criterion, test, numbers and every run id; with the results
    table also the suite that decided it, the timing metrics it reads and what would decide it."""
    by_id = {v.claim: v for v in verdicts}
    results = pd.DataFrame({"id": []}) if results is None else results
    table_suites = suites_of(results)
    rows = []
    for claim in claims:
        verdict = by_id[claim.id]
        parts = {p.id: p for p in claim.parts}
        for part_verdict in verdict.parts:
            part, decision = parts[part_verdict.part], part_verdict.decision
            read = _rows(results, decision)
            rows.append(
                {
                    "claim": claim.id,
                    "part": part.id,
                    "claim_verdict": verdict.verdict,
                    "verdict": decision.verdict,
                    "reason": decision.reason,
                    "papers": "; ".join(claim.papers),
                    "statement": part.statement,
                    "studies": " ".join(dict.fromkeys(r.study for r in part.reads)),
                    "criterion": part.criterion,
                    "params": json.dumps(dict(part.params), sort_keys=True),
                    "test": decision.test,
                    "ours": "; ".join(f"{n.name}={n.ours:.6g}" for n in decision.numbers),
                    "paper": "; ".join(f"{n.name}={n.paper:g}" for n in decision.numbers if n.paper is not None),
                    "run_ids": " ".join(decision.run_ids),
                    "suite": " ".join(suites_of(read)),
                    "timing": " ".join(timing_metrics(results, part)) if len(results) else "",
                    "power": "; ".join(advice(part, decision, read, table_suites)),
                }
            )
    return pd.DataFrame(rows)


def _rst_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/") or "-"


def claims_summary_rst(claims: Sequence[Claim], verdicts: Sequence[ClaimVerdict]) -> str:
    """The verdict summary report.html opens on (reStructuredText, included by workflow/report/workflow.rst):
    the counts, then one row per claim with its paper, verdict and why; reports/claims.md has the evidence."""
    by_id = {v.claim: v for v in verdicts}
    lines = [
        "Paper claims: verdicts of this run",
        "==================================",
        "",
        summary_line(verdicts) + ". Each verdict comes from the criterion beside the claim in "
        "``conf/claims.yaml``; the numbers compared, thresholds and run ids are in ``reports/claims.md`` and "
        "``reports/tables/claims.csv`` (category *Claims* below).",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - claim",
        "     - paper",
        "     - verdict",
        "     - parts (confirmed / refuted / inconclusive) and why",
    ]
    for claim in claims:
        verdict = by_id[claim.id]
        counts = Counter(p.decision.verdict for p in verdict.parts)
        tally = " / ".join(str(counts[v]) for v in VERDICTS)
        lines += [
            f"   * - {claim.id}",
            f"     - {_rst_cell(claim.papers[0])}",
            f"     - **{verdict.verdict}**",
            f"     - {tally}" + (f": {_rst_cell(verdict.reason)}" if verdict.reason else ""),
        ]
    return "\n".join(lines) + "\n"
