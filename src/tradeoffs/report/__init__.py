"""Report products (figures and tables) drawn from the tidy results table only, with the reference sets of
reports/reference/ (other machines' benchmark runs, tradeoffs.report.reference) beside it.

FIGURES and TABLES map a product name to (the study it needs, the function that makes it);
workflow/rules/report.smk makes one rule per product whose study is in the plan, with the caption
workflow/report/<name>.rst.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

from tradeoffs.errors import check_choice

# name -> (study of the suite it needs, "module:function" that makes it). Functions are imported on use, so
# the Snakefile can read these registries without importing matplotlib.
FIGURES: dict[str, tuple[str, str]] = {
    "numerics_qsnr": ("numerics", "tradeoffs.report.numerics:qsnr_figure"),
    "numerics_crest": ("crossover", "tradeoffs.report.numerics:crest_figure"),
    "numerics_quantizer": ("quantizer", "tradeoffs.report.numerics:quantizer_figure"),
    "numerics_lmul": ("lmul", "tradeoffs.report.numerics:lmul_figure"),
    "bench_gemm": ("gemm", "tradeoffs.report.bench:gemm_figure"),
    "bench_roofline": ("gemm", "tradeoffs.report.bench:roofline_figure"),
    "train_loss": ("train", "tradeoffs.report.train:loss_figure"),
    "numerics_capture": ("capture", "tradeoffs.report.numerics:capture_figure"),
}
TABLES: dict[str, tuple[str, str]] = {
    "numerics_qsnr": ("numerics", "tradeoffs.report.numerics:qsnr_table"),
    "numerics_crossover": ("crossover", "tradeoffs.report.numerics:crossover_table"),
    "numerics_quantizer": ("quantizer", "tradeoffs.report.numerics:quantizer_table"),
    "numerics_lmul": ("lmul", "tradeoffs.report.numerics:lmul_table"),
    "bench_gemm": ("gemm", "tradeoffs.report.bench:gemm_table"),
    "bench_qdq": ("qdq", "tradeoffs.report.bench:qdq_table"),
    "bench_inference": ("inference", "tradeoffs.report.bench:inference_table"),
    "train_recipes": ("train", "tradeoffs.report.train:recipe_table"),
    "numerics_capture": ("capture", "tradeoffs.report.numerics:capture_table"),
}


def _resolve(target: str) -> Callable:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def write_figure(name: str, table: Path, out: Path, reference: Sequence[Path] = ()) -> None:
    """Draw figure `name` from the tidy table at `table`, and the reference sets `reference`, into `out` (PNG)."""
    check_choice("figure", name, FIGURES)
    import pandas as pd

    from tradeoffs.report.reference import with_reference

    figure = _resolve(FIGURES[name][1])(with_reference(pd.read_parquet(table), reference))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=130, bbox_inches="tight")


def write_table_file(name: str, table: Path, out: Path, reference: Sequence[Path] = ()) -> None:
    """Write table `name` (CSV) from the tidy table at `table` and the reference sets `reference`."""
    check_choice("table", name, TABLES)
    import pandas as pd

    from tradeoffs.report.reference import with_reference

    out.parent.mkdir(parents=True, exist_ok=True)
    _resolve(TABLES[name][1])(with_reference(pd.read_parquet(table), reference)).to_csv(out, float_format="%.4g")
