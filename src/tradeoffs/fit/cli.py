"""`python -m tradeoffs fit LAW RUNS.csv`: fit a scaling law (or the other fits) to a table of runs and print
the parameters with their bootstrap intervals and the fit's quality; --rows writes the tidy rows."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from tradeoffs.errors import ConfigError
from tradeoffs.fit.result import FitResult
from tradeoffs.fit.robust import FitOptions
from tradeoffs.fit.table import LAWS, OPTIONAL_COLUMNS, fit_table, law_help, read_runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradeoffs fit",
        description=__doc__,
        epilog=f"laws and their columns (optional in every table: {', '.join(OPTIONAL_COLUMNS)}):\n{law_help()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("law", help=f"one of {', '.join(LAWS)}")
    parser.add_argument("runs", type=Path, help="CSV with one row per run")
    parser.add_argument("--group-by", nargs="+", default=[], help="fit once per value of these columns")
    parser.add_argument("--reference", nargs="+", default=["fp32"], help="quartet: full-precision name(s)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--level", type=float, default=0.95, help="interval level")
    parser.add_argument("--huber-delta", type=float, default=1e-3, help="Huber delta on log residuals")
    parser.add_argument("--starts", type=int, default=8, help="best grid points the optimiser starts from")
    parser.add_argument("--min-decades", type=float, default=1.0, help="span an exponent's variable needs")
    parser.add_argument("--tolerance", type=float, default=1.25, help="iso_flop: factor of compute of a group")
    parser.add_argument("--rows", type=Path, help="also write the tidy rows (full precision) to this CSV")
    return parser


def format_result(result: FitResult) -> str:
    """A readable summary: status, quality, then one line per estimate with its interval."""
    quality = ", ".join(f"{k} {v:.6g}" for k, v in result.quality.items())
    lines = [
        f"{result.fit}: {result.status}{f' ({result.reason})' if result.reason else ''}; {len(result.run_ids)} runs"
    ]
    if quality:
        lines.append(f"  quality: {quality}")
    for e in result.estimates:
        labels = " ".join(
            f"{k}={v:.3g}" if k == "compute" else f"{k}={v}" for k, v in e.labels.items() if k != "group_runs"
        )
        interval = "" if math.isnan(e.low) else f"  [{e.low:.6g}, {e.high:.6g}]"
        note = "" if e.status == "ok" and not e.reason else f"  ({e.status}{': ' + e.reason if e.reason else ''})"
        if e.status == "ok" and e.identified is False:
            note += f"  (not identified: {e.identification})"
        lines.append(f"  {e.name:18s} {labels:28s} {e.value:.6g}{interval}{note}")
    if result.estimates and any(not math.isnan(e.low) for e in result.estimates):
        lines.append(f"  intervals: {result.level:.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        options = FitOptions(
            args.huber_delta, args.starts, args.bootstrap, args.seed, args.level, min_decades=args.min_decades
        )
        results = fit_table(args.law, read_runs(args.runs), options, args.group_by, args.reference, args.tolerance)
    except ConfigError as error:
        sys.exit(f"error: {error}")
    print("\n\n".join(map(format_result, results)))
    if args.rows:
        pd.DataFrame([row for result in results for row in result.rows()]).to_csv(args.rows, index=False)
        print(f"wrote {args.rows}")
