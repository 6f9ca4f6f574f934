"""Report products (figures and tables) drawn from the tidy results table only.

FIGURES and TABLES map a product name to (the experiment kind it needs, the function that makes it);
workflow/rules/report.smk makes one rule per product whose kind is in the plan, with the caption
workflow/report/<name>.rst.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tradeoffs.errors import check_choice
from tradeoffs.report import numerics

FIGURES: dict[str, tuple[str, Callable]] = {
    "numerics_qsnr": ("numerics", numerics.qsnr_figure),
}
TABLES: dict[str, tuple[str, Callable]] = {
    "numerics_qsnr": ("numerics", numerics.qsnr_table),
}


def write_figure(name: str, table: Path, out: Path) -> None:
    """Draw figure `name` from the tidy table at `table` into `out` (PNG)."""
    check_choice("figure", name, FIGURES)
    frame = pd.read_parquet(table)
    figure = FIGURES[name][1](frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=130, bbox_inches="tight")


def write_table_file(name: str, table: Path, out: Path) -> None:
    """Write table `name` (CSV) from the tidy table at `table`."""
    check_choice("table", name, TABLES)
    frame = pd.read_parquet(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    TABLES[name][1](frame).to_csv(out, float_format="%.4g")
