"""Report products (figures and tables) drawn from the tidy results table only, with the reference sets of
reports/reference/ (other machines' benchmark runs, tradeoffs.report.reference) beside it.

FIGURES and TABLES map a product name to a Product: the studies it reads and the function that makes it.
workflow/rules/report.smk makes one rule per product whose studies are in the plan, with the caption
workflow/report/<name>.rst. A product gets its rows through tradeoffs.report.common.select.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tradeoffs.errors import check_choice

if TYPE_CHECKING:
    import pandas as pd



@dataclass(frozen=True)
class Product:
    """A figure or table: the studies whose rows it reads (it is made when all are planned; `optional` ones are
    drawn when present) and the "module:function" that makes it from the tidy table."""

    studies: tuple[str, ...]
    target: str
    optional: tuple[str, ...] = ()


# Functions are imported on use, so the Snakefile can read these registries without importing matplotlib.
FIGURES: dict[str, Product] = {
    "numerics_qsnr": Product(("numerics",), "tradeoffs.report.numerics:qsnr_figure"),
    "numerics_crest": Product(("crossover", "numerics"), "tradeoffs.report.numerics:crest_figure"),
    "numerics_quantizer": Product(("quantizer",), "tradeoffs.report.numerics:quantizer_figure"),
    "numerics_lmul": Product(("lmul",), "tradeoffs.report.numerics:lmul_figure"),
    "bench_gemm": Product(("gemm",), "tradeoffs.report.bench:gemm_figure"),
    "bench_roofline": Product(("gemm",), "tradeoffs.report.bench:roofline_figure", optional=("bandwidth",)),
    "train_loss": Product(("train",), "tradeoffs.report.train:loss_figure"),
    "numerics_capture": Product(("capture",), "tradeoffs.report.numerics:capture_figure"),
    "nondeterminism_agreement": Product(("nondeterminism",), "tradeoffs.report.nondeterminism:agreement_figure"),
}
TABLES: dict[str, Product] = {
    "numerics_qsnr": Product(("numerics",), "tradeoffs.report.numerics:qsnr_table"),
    "numerics_crossover": Product(("crossover", "numerics"), "tradeoffs.report.numerics:crossover_table"),
    "numerics_quantizer": Product(("quantizer",), "tradeoffs.report.numerics:quantizer_table"),
    "numerics_lmul": Product(("lmul",), "tradeoffs.report.numerics:lmul_table"),
    "bench_gemm": Product(("gemm",), "tradeoffs.report.bench:gemm_table"),
    "bench_qdq": Product(("qdq",), "tradeoffs.report.bench:qdq_table"),
    "bench_inference": Product(("inference",), "tradeoffs.report.bench:inference_table"),
    "train_recipes": Product(("train",), "tradeoffs.report.train:recipe_table"),
    "numerics_capture": Product(("capture",), "tradeoffs.report.numerics:capture_table"),
    "nondeterminism_divergence": Product(("nondeterminism",), "tradeoffs.report.nondeterminism:divergence_table"),
}


def planned_products(registry: dict[str, Product], studies: Sequence[str]) -> list[str]:
    """The products of `registry` whose studies are all among `studies` (those a plan has)."""
    return [name for name, product in registry.items() if set(product.studies) <= set(studies)]


def _rows(product: Product, table: Path, reference: Sequence[Path]) -> pd.DataFrame:
    """The tidy table (with the reference sets) restricted to the product's studies, each required one present."""
    import pandas as pd

    from tradeoffs.report.common import select, studies_of
    from tradeoffs.report.reference import with_reference

    results = with_reference(pd.read_parquet(table), reference)
    for study in product.studies:
        select(results, study, statuses=tuple(results["status"].unique()))
    return results[studies_of(results).isin([*product.studies, *product.optional])]


def _resolve(target: str) -> Callable:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def write_figure(name: str, table: Path, out: Path, reference: Sequence[Path] = ()) -> None:
    """Draw figure `name` from the tidy table at `table`, and the reference sets `reference`, into `out` (PNG)."""
    check_choice("figure", name, FIGURES)
    product = FIGURES[name]
    figure = _resolve(product.target)(_rows(product, table, reference))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=130, bbox_inches="tight")


def write_table_file(name: str, table: Path, out: Path, reference: Sequence[Path] = ()) -> None:
    """Write table `name` (CSV) from the tidy table at `table` and the reference sets `reference`."""
    check_choice("table", name, TABLES)
    product = TABLES[name]
    frame = _resolve(product.target)(_rows(product, table, reference))
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, float_format="%.4g")
