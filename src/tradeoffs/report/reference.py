"""Reference data sets: benchmark results measured on other machines (GPUs), kept in the repository under
reports/reference/<name>.parquet with their provenance, and drawn by the report beside this run's.

A reference set is a slice of another run's results.parquet (the tidy table): its rows of some benchmark
kinds, every column kept (config, provenance, status, message), plus a `reference` column with the
set's name. Snakemake hands every set to every report product (`--reference`); the bench products name a
reference run's hardware "<GPU or CPU> (reference: <name>)", so a set never mixes with this machine's runs,
even from the same CPU model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tradeoffs.errors import ConfigError
from tradeoffs.paths import project_root
from tradeoffs.results import check_table_file

REFERENCE_BENCHMARKS = ("gemm", "inference")
BENCHMARK_KINDS = ("bandwidth", "gemm", "inference", "qdq")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def reference_dir() -> Path:
    return project_root() / "reports" / "reference"


def export_reference(
    results_path: Path,
    name: str,
    benchmarks: tuple[str, ...] = REFERENCE_BENCHMARKS,
    directory: Path | None = None,
) -> Path:
    """Write the runs of the benchmark kinds `benchmarks` in the results table at `results_path` as reference set
    `name`."""
    if not _NAME.match(name):
        raise ConfigError(f"reference name '{name}': use lower-case letters, digits, '_', '-' and '.' (e.g. h100_sxm)")
    check_table_file(results_path)
    results = pd.read_parquet(results_path)
    present = sorted(set(results["kind"]) & set(BENCHMARK_KINDS))
    rows = results[results["kind"].isin(benchmarks)]
    if rows.empty:
        raise ConfigError(
            f"{results_path} has no benchmark runs of {list(benchmarks)}; its benchmark runs are of: "
            f"{present or 'none'}"
        )
    out = (directory or reference_dir()) / f"{name}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.assign(reference=name).to_parquet(out, index=False)
    return out


def with_reference(results: pd.DataFrame, sets: Sequence[Path]) -> pd.DataFrame:
    """`results` with the rows of the reference sets `sets` (parquet files) appended."""
    if not sets:
        return results
    return pd.concat([results, *(pd.read_parquet(path) for path in sets)], ignore_index=True)
