"""Report products (figures and tables) drawn from the tidy results table only, with the reference sets of
reports/reference/ (other machines' benchmark runs, tradeoffs.report.reference) beside it.

FIGURES and TABLES map a product name to a Product: the function that makes it, the paper it belongs to and
its named reads (tradeoffs.report.reads.Rows), which the registry selects from the table and hands the
function as frames by name; its studies are its reads'. workflow/rules/report.smk makes one rule per product
whose studies are in the plan, with the caption workflow/report/<name>.rst. A product one of whose studies has
no successful run is the statement "no successful runs of study ..." with those runs
(tradeoffs.report.common.make_product).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeoffs.errors import check_choice
from tradeoffs.report.reads import SCORE_METRICS, STRATEGY_METRICS, Rows

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Product:
    """A figure or table: the "module:function" that makes it, the paper it reproduces (report.html shows it
    under that category) and its named reads, each handed to the function as a frame under its name. Its studies
    are those of its reads: it is made when every required one is planned; optional ones are drawn when present."""

    target: str
    paper: str
    reads: Mapping[str, Rows]

    @property
    def studies(self) -> tuple[str, ...]:
        """The studies of its required reads, in their order."""
        return tuple(dict.fromkeys(read.study for read in self.reads.values() if not read.optional))

    @property
    def optional(self) -> tuple[str, ...]:
        """The studies only its optional reads read."""
        optional = (read.study for read in self.reads.values() if read.optional)
        return tuple(study for study in dict.fromkeys(optional) if study not in self.studies)

    def frames(self, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Its reads' rows of the tidy table `results`, by name."""
        return {name: read.rows(results) for name, read in self.reads.items()}

    def make(self, results: pd.DataFrame, **settings: Any) -> Any:
        """The figure or table its function makes from its reads of `results` (and keyword `settings`)."""
        return _resolve(self.target)(**self.frames(results), **settings)


# The papers: the categories report.html groups products under (claims name theirs in conf/claims.yaml).
INT_VS_FP = "INT v.s. FP (2025)"
QUARTET = "Quartet (2025)"
LMUL = "Addition is All You Need (L-Mul, 2024)"
HOPPER = "Benchmarking the Hopper GPU (2024)"
MFU = "Megatron-LM, MegaScale (MFU)"
GPTQ = "GPTQ (2023)"
LLM_INT8 = "LLM.int8() (2022)"
BF16_OR_DEATH = "Give Me BF16 or Give Me Death (2024)"
FP32_OR_DEATH = "Give Me FP32 or Give Me Death (2025)"
MODEL_SCALING = "Fast and Accurate Model Scaling (2021)"
QAT = "Compute-Optimal QAT (2025)"
FP8_AND_BACK = "To FP8 and Back Again (2024)"
COAT = "COAT (2025)"
FLASH_ATTENTION = "FlashAttention (2022), FlashAttention-2 (2023)"
RECOMPUTATION = "Megatron-LM (2021), activation recomputation (2022)"
ZERO = "ZeRO (2020)"
ONEBIT_ADAM = "1-bit Adam (2021)"
ZEROQUANT_FP6 = "ZeroQuant(4+2) (2023)"
LLM_FP4 = "LLM-FP4 (2023)"

# The reads several products share. The metrics of `requires` must be in a study's runs.
BENCH = ("ok", "invalid")  # a benchmark run whose timing is invalid is still drawn, flagged
TRAINED = ("ok", "diverged")
NUMERICS = {"numerics": Rows("numerics")}
CREST = {"crossover": Rows("crossover"), "numerics": Rows("numerics")}
GEMM = {"gemm": Rows("gemm", BENCH), "unsupported": Rows("gemm", ("unsupported",))}
LADDER = {
    "ladder": Rows("ladder", TRAINED, requires=("non_embedding_parameters", "training_tokens")),
    "scaling_law": Rows("scaling_law", requires=("fit_parameter",)),
}
FITS = {"scaling_law": LADDER["scaling_law"]}
ZERO_STATES = ("model_state_bytes", "model_state_formula_bytes", "peak_rss_max", "final_train_loss")


def _quant(*studies: str) -> dict[str, Rows]:
    return {study: Rows(study, requires=SCORE_METRICS) for study in studies}


def _trained(study: str) -> dict[str, Rows]:
    return {study: Rows(study, TRAINED, requires=("training_tokens",))}


# Functions are imported on use, so the Snakefile can read these registries without importing matplotlib.
FIGURES: dict[str, Product] = {
    "numerics_qsnr": Product("tradeoffs.report.numerics:qsnr_figure", INT_VS_FP, NUMERICS),
    "numerics_crest": Product("tradeoffs.report.numerics:crest_figure", INT_VS_FP, CREST),
    "numerics_quantizer": Product(
        "tradeoffs.report.numerics:quantizer_figure", QUARTET, {"quantizer": Rows("quantizer")}
    ),
    "numerics_lmul": Product(
        "tradeoffs.report.numerics:lmul_figure", LMUL, {"lmul": Rows("lmul", metric=("mean_relative_error",))}
    ),
    "bench_gemm": Product("tradeoffs.report.bench:gemm_figure", HOPPER, GEMM),
    "bench_roofline": Product(
        "tradeoffs.report.bench:roofline_figure",
        HOPPER,
        {"gemm": GEMM["gemm"], "bandwidth": Rows("bandwidth", BENCH, optional=True)},
    ),
    "train_loss": Product("tradeoffs.report.train:loss_figure", MFU, {"train": Rows("train", TRAINED)}),
    "numerics_capture": Product("tradeoffs.report.numerics:capture_figure", INT_VS_FP, {"capture": Rows("capture")}),
    "nondeterminism_agreement": Product(
        "tradeoffs.report.nondeterminism:agreement_figure",
        FP32_OR_DEATH,
        {
            "nondeterminism": Rows(
                "nondeterminism",
                requires=("agreement_at_position", "first_divergence_position", "max_logit_difference"),
            )
        },
    ),
    "scaling_strategies": Product(
        "tradeoffs.report.scaling:strategies_figure",
        MODEL_SCALING,
        {"strategies": Rows("strategies", BENCH, requires=STRATEGY_METRICS)},
    ),
    "scaling_ladder": Product("tradeoffs.report.scaling:ladder_figure", QUARTET, LADDER),
    "scaling_frontier": Product("tradeoffs.report.scaling:frontier_figure", QUARTET, LADDER),
    "scaling_iso_flop": Product("tradeoffs.report.scaling:iso_flop_figure", QUARTET, LADDER),
    "quant_weight_only": Product("tradeoffs.report.quant:weight_only_figure", GPTQ, _quant("gptq")),
    "quant_outliers": Product("tradeoffs.report.quant:outliers_figure", LLM_INT8, _quant("outliers")),
    "quant_pareto": Product(
        "tradeoffs.report.quant:pareto_figure",
        BF16_OR_DEATH,
        {**_quant("ptq"), "gemm": Rows("gemm", optional=True)},
    ),
    "qat_fraction": Product(
        "tradeoffs.report.low_precision_training:qat_fraction_figure", QAT, _trained("qat_fraction")
    ),
    "stability_divergence": Product(
        "tradeoffs.report.low_precision_training:stability_figure", FP8_AND_BACK, _trained("stability")
    ),
    "optimizer_fp8": Product(
        "tradeoffs.report.low_precision_training:optimizer_fp8_figure", COAT, _trained("optimizer_fp8")
    ),
    "memory_attention": Product(
        "tradeoffs.report.memory:attention_figure",
        FLASH_ATTENTION,
        {"attention_memory": Rows("attention_memory", requires=("saved_bytes", "peak_bytes", "time_median_s"))},
    ),
    "memory_recompute": Product(
        "tradeoffs.report.memory:recompute_figure",
        RECOMPUTATION,
        {"recompute": Rows("recompute", requires=("time_ratio", "saved_ratio"))},
    ),
    "memory_fp8_activations": Product(
        "tradeoffs.report.memory:fp8_activations_figure",
        COAT,
        {"fp8_activations": Rows("fp8_activations", requires=("activation_bytes", "final_val_loss", "training_bytes"))},
    ),
    "quant_weight_formats": Product(
        "tradeoffs.report.quant:weight_formats_figure", ZEROQUANT_FP6, _quant("fp6_weights", "fp4_weights")
    ),
    "zero_memory": Product(
        "tradeoffs.report.distributed:zero_memory_figure",
        ZERO,
        {"zero_memory": Rows("zero_memory", requires=(*ZERO_STATES, "train_loss"))},
    ),
    "comm_bytes": Product(
        "tradeoffs.report.distributed:comm_bytes_figure",
        ONEBIT_ADAM,
        {"comm_compression": Rows("comm_compression", requires=("bytes_sent", "train_loss", "total_bytes_sent"))},
    ),
}
TABLES: dict[str, Product] = {
    "numerics_qsnr": Product("tradeoffs.report.numerics:qsnr_table", INT_VS_FP, NUMERICS),
    "numerics_crossover": Product("tradeoffs.report.numerics:crossover_table", INT_VS_FP, CREST),
    "numerics_quantizer": Product(
        "tradeoffs.report.numerics:quantizer_table", QUARTET, {"quantizer": Rows("quantizer")}
    ),
    "numerics_lmul": Product("tradeoffs.report.numerics:lmul_table", LMUL, FIGURES["numerics_lmul"].reads),
    "bench_gemm": Product("tradeoffs.report.bench:gemm_table", HOPPER, GEMM),
    "bench_qdq": Product("tradeoffs.report.bench:qdq_table", HOPPER, {"qdq": Rows("qdq", BENCH)}),
    "bench_inference": Product(
        "tradeoffs.report.bench:inference_table", HOPPER, {"inference": Rows("inference", BENCH)}
    ),
    "train_recipes": Product("tradeoffs.report.train:recipe_table", MFU, {"train": Rows("train", TRAINED)}),
    "numerics_capture": Product("tradeoffs.report.numerics:capture_table", INT_VS_FP, {"capture": Rows("capture")}),
    "nondeterminism_divergence": Product(
        "tradeoffs.report.nondeterminism:divergence_table",
        FP32_OR_DEATH,
        {
            "nondeterminism": Rows(
                "nondeterminism",
                requires=(
                    "identical_fraction",
                    "bitwise_identical_fraction",
                    "first_divergence_position",
                    "max_logit_difference",
                    "min_reference_margin",
                ),
            )
        },
    ),
    "scaling_strategies": Product(
        "tradeoffs.report.scaling:strategies_table", MODEL_SCALING, FIGURES["scaling_strategies"].reads
    ),
    "scaling_ladder_fits": Product("tradeoffs.report.scaling:ladder_fits_table", QUARTET, FITS),
    "scaling_iso_flop": Product("tradeoffs.report.scaling:iso_flop_table", QUARTET, FITS),
    "quant_weight_only": Product("tradeoffs.report.quant:weight_only_table", GPTQ, _quant("gptq")),
    "quant_outliers": Product("tradeoffs.report.quant:outliers_table", LLM_INT8, _quant("outliers")),
    "quant_shootout": Product("tradeoffs.report.quant:shootout_table", BF16_OR_DEATH, _quant("ptq")),
    "qat_fraction": Product(
        "tradeoffs.report.low_precision_training:qat_fraction_table", QAT, _trained("qat_fraction")
    ),
    "stability_divergence": Product(
        "tradeoffs.report.low_precision_training:stability_table", FP8_AND_BACK, _trained("stability")
    ),
    "optimizer_fp8": Product(
        "tradeoffs.report.low_precision_training:optimizer_fp8_table", COAT, _trained("optimizer_fp8")
    ),
    "memory_attention": Product(
        "tradeoffs.report.memory:attention_table",
        FLASH_ATTENTION,
        {"attention_memory": Rows("attention_memory", requires=("memory_slope",))},
    ),
    "memory_recompute": Product(
        "tradeoffs.report.memory:recompute_table",
        RECOMPUTATION,
        {"recompute": Rows("recompute", requires=("saved_bytes", "mfu", "hfu", "time_ratio", "saved_ratio"))},
    ),
    "memory_fp8_activations": Product(
        "tradeoffs.report.memory:fp8_activations_table", COAT, FIGURES["memory_fp8_activations"].reads
    ),
    "quant_fp6_weights": Product("tradeoffs.report.quant:fp6_weights_table", ZEROQUANT_FP6, _quant("fp6_weights")),
    "quant_fp4_weights": Product("tradeoffs.report.quant:fp4_weights_table", LLM_FP4, _quant("fp4_weights")),
    "zero_memory": Product(
        "tradeoffs.report.distributed:zero_memory_table",
        ZERO,
        {"zero_memory": Rows("zero_memory", requires=ZERO_STATES)},
    ),
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
    return make_product(product, _rows(product, results), kind)


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
