"""The papers' claims with verdicts decided from the tidy results table.

conf/claims.yaml holds one entry per claim (tradeoffs.report.claims.spec): its papers, statement, and parts,
each with the criterion (tradeoffs.report.claims.criteria) that decides it from reads of the table's rows
(tradeoffs.report.claims.select). tradeoffs.report.claims.engine applies them,
tradeoffs.report.claims.render writes reports/claims.md and reports/tables/claims.csv (docs/claims.md) with what
would decide each undecided part (advice, power), and tradeoffs.report.claims.against lists the parts whose
verdict differs between two tables; timings are judged apart (stability).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tradeoffs.atomic import write_bytes_atomic
from tradeoffs.errors import ConfigError
from tradeoffs.report.claims.against import compare_tables, differences_text
from tradeoffs.report.claims.engine import decide_part, evaluate_claims
from tradeoffs.report.claims.render import claims_markdown, claims_summary_rst, claims_table, summary_line
from tradeoffs.report.claims.spec import Claim, Part, Read, load_claims, parse_claims
from tradeoffs.report.claims.verdicts import ClaimVerdict, Decision


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode())


def write_claims(
    table: Path,
    markdown: Path | None = None,
    csv: Path | None = None,
    reference: Sequence[Path] = (),
    claims_file: Path | None = None,
    summary: Path | None = None,
) -> list[ClaimVerdict]:
    """Decide every claim from the tidy table at `table` (with the reference sets `reference`) and write the
    Markdown report, the CSV table and the reStructuredText summary report.html opens on, where asked; returns
    the verdicts."""
    import pandas as pd

    from tradeoffs.report.reference import with_reference

    if not table.is_file():
        raise ConfigError(f"results table {table} not found: collect the results first (`tradeoffs collect`)")
    claims = load_claims(claims_file)
    results = with_reference(pd.read_parquet(table), reference)
    verdicts = evaluate_claims(results, claims)
    if markdown is not None:
        _write_atomic(markdown, claims_markdown(claims, verdicts, results))
    if csv is not None:
        _write_atomic(csv, claims_table(claims, verdicts, results).to_csv(index=False))
    if summary is not None:
        _write_atomic(summary, claims_summary_rst(claims, verdicts))
    return verdicts


def compare_claims(first: Path, second: Path, reference: Sequence[Path] = (), claims_file: Path | None = None) -> str:
    """The parts whose verdict differs between the tidy tables `first` and `second` (each read with the
    reference sets `reference`), each with the comparisons and reads that moved against their bands."""
    import pandas as pd

    from tradeoffs.report.reference import with_reference

    for table in (first, second):
        if not table.is_file():
            raise ConfigError(f"results table {table} not found: collect the results first (`tradeoffs collect`)")
    claims = load_claims(claims_file)
    tables = [with_reference(pd.read_parquet(t), reference) for t in (first, second)]
    found = compare_tables(*tables, claims)
    return differences_text(found, sum(len(c.parts) for c in claims), str(first), str(second))


__all__ = [
    "Claim",
    "ClaimVerdict",
    "Decision",
    "Part",
    "Read",
    "claims_markdown",
    "claims_table",
    "compare_claims",
    "decide_part",
    "evaluate_claims",
    "load_claims",
    "parse_claims",
    "summary_line",
    "write_claims",
]
