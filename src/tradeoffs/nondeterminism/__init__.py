"""Reproducibility of inference: greedy decoding under reduction orders that change only the order of
summation (batch size and composition, split-K, CPU threads, kernel choice), per precision (fp32, fp16,
bf16, LayerCast). See docs/nondeterminism.md."""

from __future__ import annotations

from tradeoffs.nondeterminism.divergence import (
    PromptDivergence,
    agreement_by_position,
    compare_prompt,
    first_divergence,
    top2_margins,
)
from tradeoffs.nondeterminism.orders import (
    ATTENTION_KERNELS,
    BLAS_LIBRARIES,
    ReductionOrder,
    parse_order,
    reduction_order,
)
from tradeoffs.nondeterminism.precision import PRECISIONS, cast_model, storage_dtypes
from tradeoffs.nondeterminism.splitk import SplitK, split_attention, split_linear, split_matmul
from tradeoffs.nondeterminism.study import (
    Comparison,
    GreedyRun,
    MetricRow,
    NondeterminismConfig,
    NondeterminismResult,
    SkippedRun,
    batch_groups,
    greedy_decode,
    prompt_windows,
    run_study,
)

__all__ = [
    "ATTENTION_KERNELS",
    "BLAS_LIBRARIES",
    "PRECISIONS",
    "Comparison",
    "GreedyRun",
    "MetricRow",
    "NondeterminismConfig",
    "NondeterminismResult",
    "PromptDivergence",
    "ReductionOrder",
    "SkippedRun",
    "SplitK",
    "agreement_by_position",
    "batch_groups",
    "cast_model",
    "compare_prompt",
    "first_divergence",
    "greedy_decode",
    "parse_order",
    "prompt_windows",
    "reduction_order",
    "run_study",
    "split_attention",
    "split_linear",
    "split_matmul",
    "storage_dtypes",
    "top2_margins",
]
