"""Report products (figures and tables) drawn from the tidy results table only, with the reference sets of
reports/reference/ (other machines' benchmark runs, tradeoffs.report.reference) beside it.

FIGURES and TABLES map a product name to a Product: the studies it reads and the function that makes it.
workflow/rules/report.smk makes one rule per product whose studies are in the plan, with the caption
workflow/report/<name>.rst. A product gets its rows through tradeoffs.report.common.select; a product one of
whose studies has no successful run is the statement "no successful runs of study ..." with those runs
(tradeoffs.report.common.make_product).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    @property
    def paper(self) -> str:
        """The report category the product is shown under: the paper its first study reproduces."""
        return PAPERS.get(self.studies[0], "Other studies")


# The paper (report category) each study's products belong to, as report.html groups them.
PAPERS: dict[str, str] = {
    "numerics": "INT v.s. FP (2025)",
    "crossover": "INT v.s. FP (2025)",
    "capture": "INT v.s. FP (2025)",
    "quantizer": "Quartet (2025)",
    "lmul": "Addition is All You Need (L-Mul, 2024)",
    "gemm": "Benchmarking the Hopper GPU (2024)",
    "qdq": "Benchmarking the Hopper GPU (2024)",
    "inference": "Benchmarking the Hopper GPU (2024)",
    "train": "Megatron-LM, MegaScale (MFU)",
    "gptq": "GPTQ (2023)",
    "outliers": "LLM.int8() (2022)",
    "ptq": "Give Me BF16 or Give Me Death (2024)",
    "nondeterminism": "Give Me FP32 or Give Me Death (2025)",
    "strategies": "Fast and Accurate Model Scaling (2021)",
    "ladder": "Quartet (2025)",
    "scaling_law": "Quartet (2025)",
    "qat_fraction": "Compute-Optimal QAT (2025)",
    "stability": "To FP8 and Back Again (2024)",
    "optimizer_states": "COAT (2025)",
    "optimizer_fp8": "COAT (2025)",
    "attention_memory": "FlashAttention (2022), FlashAttention-2 (2023)",
    "recompute": "Megatron-LM (2021), activation recomputation (2022)",
    "fp8_activations": "COAT (2025)",
    "zero_memory": "ZeRO (2020)",
    "comm_compression": "1-bit Adam (2021)",
    "fp6_weights": "ZeroQuant(4+2) (2023)",
    "fp4_weights": "LLM-FP4 (2023)",
}

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
    "scaling_strategies": Product(("strategies",), "tradeoffs.report.scaling:strategies_figure"),
    "scaling_ladder": Product(("ladder", "scaling_law"), "tradeoffs.report.scaling:ladder_figure"),
    "scaling_frontier": Product(("ladder", "scaling_law"), "tradeoffs.report.scaling:frontier_figure"),
    "scaling_iso_flop": Product(("ladder", "scaling_law"), "tradeoffs.report.scaling:iso_flop_figure"),
    "quant_weight_only": Product(("gptq",), "tradeoffs.report.quant:weight_only_figure"),
    "quant_outliers": Product(("outliers",), "tradeoffs.report.quant:outliers_figure"),
    "quant_pareto": Product(("ptq",), "tradeoffs.report.quant:pareto_figure", optional=("gemm",)),
    "qat_fraction": Product(("qat_fraction",), "tradeoffs.report.low_precision_training:qat_fraction_figure"),
    "stability_divergence": Product(("stability",), "tradeoffs.report.low_precision_training:stability_figure"),
    "optimizer_fp8": Product(("optimizer_fp8",), "tradeoffs.report.low_precision_training:optimizer_fp8_figure"),
    "memory_attention": Product(("attention_memory",), "tradeoffs.report.memory:attention_figure"),
    "memory_recompute": Product(("recompute",), "tradeoffs.report.memory:recompute_figure"),
    "memory_fp8_activations": Product(("fp8_activations",), "tradeoffs.report.memory:fp8_activations_figure"),
    "quant_weight_formats": Product(("fp6_weights", "fp4_weights"), "tradeoffs.report.quant:weight_formats_figure"),
    "zero_memory": Product(("zero_memory",), "tradeoffs.report.distributed:zero_memory_figure"),
    "comm_bytes": Product(("comm_compression",), "tradeoffs.report.distributed:comm_bytes_figure"),
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
    "scaling_strategies": Product(("strategies",), "tradeoffs.report.scaling:strategies_table"),
    "scaling_ladder_fits": Product(("scaling_law",), "tradeoffs.report.scaling:ladder_fits_table"),
    "scaling_iso_flop": Product(("scaling_law",), "tradeoffs.report.scaling:iso_flop_table"),
    "quant_weight_only": Product(("gptq",), "tradeoffs.report.quant:weight_only_table"),
    "quant_outliers": Product(("outliers",), "tradeoffs.report.quant:outliers_table"),
    "quant_shootout": Product(("ptq",), "tradeoffs.report.quant:shootout_table"),
    "qat_fraction": Product(("qat_fraction",), "tradeoffs.report.low_precision_training:qat_fraction_table"),
    "stability_divergence": Product(("stability",), "tradeoffs.report.low_precision_training:stability_table"),
    "optimizer_fp8": Product(("optimizer_fp8",), "tradeoffs.report.low_precision_training:optimizer_fp8_table"),
    "memory_attention": Product(("attention_memory",), "tradeoffs.report.memory:attention_table"),
    "memory_recompute": Product(("recompute",), "tradeoffs.report.memory:recompute_table"),
    "memory_fp8_activations": Product(("fp8_activations",), "tradeoffs.report.memory:fp8_activations_table"),
    "quant_fp6_weights": Product(("fp6_weights",), "tradeoffs.report.quant:fp6_weights_table"),
    "quant_fp4_weights": Product(("fp4_weights",), "tradeoffs.report.quant:fp4_weights_table"),
    "zero_memory": Product(("zero_memory",), "tradeoffs.report.distributed:zero_memory_table"),
}


def planned_products(registry: dict[str, Product], studies: Sequence[str]) -> list[str]:
    """The products of `registry` whose studies are all among `studies` (those a plan has)."""
    return [name for name, product in registry.items() if set(product.studies) <= set(studies)]


def _rows(product: Product, results: pd.DataFrame) -> pd.DataFrame:
    """The tidy table (with the reference sets) restricted to the product's studies, each required one present."""
    from tradeoffs.report.common import select, studies_of

    for study in product.studies:
        select(results, study, statuses=tuple(results["status"].unique()))
    return results[studies_of(results).isin([*product.studies, *product.optional])]


def _resolve(target: str) -> Callable:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def make(kind: str, name: str, results: pd.DataFrame) -> Any:
    """Figure or table `name` (`kind` "figure" or "table") made from the tidy table `results`, reference sets
    included: a matplotlib figure or a DataFrame."""
    from tradeoffs.report.common import make_product

    registry = FIGURES if kind == "figure" else TABLES
    check_choice(kind, name, registry)
    product = registry[name]
    return make_product(_resolve(product.target), _rows(product, results), product.studies, kind, product.optional)


def product_csv(kind: str, made: Any) -> str:
    """The CSV saved of a product `make` made: a table's cells as written to reports/tables/<name>.csv, a
    figure's plotted data (tradeoffs.report.figure_data) as written beside it as <name>.csv."""
    if kind == "table":
        return made.to_csv(float_format="%.4g")
    from tradeoffs.report.figure_data import figure_data

    return figure_data(made).to_csv(index=False)


def _results(table: Path, reference: Sequence[Path]) -> pd.DataFrame:
    import pandas as pd

    from tradeoffs.report.reference import with_reference

    return with_reference(pd.read_parquet(table), reference)


def write_figure(name: str, table: Path, out: Path, reference: Sequence[Path] = ()) -> None:
    """Draw figure `name` from the tidy table at `table`, and the reference sets `reference`, into `out` (PNG),
    beside it as SVG, and the data it plots beside it as CSV (tradeoffs.report.figure_data)."""
    import matplotlib.pyplot as plt

    check_choice("figure", name, FIGURES)
    figure = make("figure", name, _results(table, reference))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=130, bbox_inches="tight")
    figure.savefig(out.with_suffix(".svg"), bbox_inches="tight")
    out.with_suffix(".csv").write_text(product_csv("figure", figure))
    plt.close(figure)


def write_table_file(name: str, table: Path, out: Path, reference: Sequence[Path] = ()) -> None:
    """Write table `name` as CSV at `out` and as Markdown beside it, from the tidy table at `table` and the
    reference sets `reference`."""
    check_choice("table", name, TABLES)
    frame = make("table", name, _results(table, reference))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(product_csv("table", frame))
    out.with_suffix(".md").write_text(frame.to_markdown(floatfmt=".4g") + "\n")
