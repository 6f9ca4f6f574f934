"""LLM.int8() (Dettmers et al. 2022): each Linear replaced by its mixed-precision decomposition
(tradeoffs.quant.layers.LLMInt8Linear). Needs no model structure: any nn.Module's Linears."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.formats import FormatSpec, get_format
from tradeoffs.quant.api import QuantizeResult, register_quantize_handler
from tradeoffs.quant.layers import INT8_VECTORWISE, make_llm_int8
from tradeoffs.quant.spec import QuantSpec, get_spec, resolve_spec


def _implied_spec() -> QuantSpec:
    return get_spec("W8A8", weight=INT8_VECTORWISE, activation=INT8_VECTORWISE)


@dataclass(frozen=True)
class LLMInt8Config:
    """LLM.int8(): vector-wise INT8 (per-token activation, per-row weight absmax scales) with the input columns
    holding any |x| >= threshold computed in 16 bits. The spec is the one the method implies (weight and
    activation `int8`, the weight's own scale layout); it says whether `lm_head` is quantized and may add a KV
    cache format.

    outlier_weights: `16bit` multiplies the outlier columns with the 16-bit weights (the paper's
    decomposition; the 16-bit weights are kept), `int8` with the INT8-dequantized weights (what bitsandbytes
    does, so only INT8 weights are stored)."""

    spec: QuantSpec | str = field(default_factory=_implied_spec)
    threshold: float = 6.0
    outlier_dtype: str = "fp16"
    outlier_weights: str = "16bit"

    def __post_init__(self) -> None:
        resolve_spec(self)
        check_positive("llm_int8.threshold", self.threshold)
        check_choice("llm_int8.outlier_dtype", self.outlier_dtype, ("fp16", "bf16"))
        check_choice("llm_int8.outlier_weights", self.outlier_weights, ("16bit", "int8"))
        int8 = get_format(INT8_VECTORWISE)
        spec = self.spec
        if spec.weight_format != int8 or spec.activation_format != int8:
            raise ConfigError(
                f"llm_int8.spec: LLM.int8() implies vector-wise INT8 weights and activations (format "
                f"'{INT8_VECTORWISE}': one absmax scale per row and per token); got {spec.label} with weight "
                f"{_label(spec.weight_format)}, activation {_label(spec.activation_format)}. Valid choices: W8A8 "
                f"with weight={INT8_VECTORWISE}, activation={INT8_VECTORWISE}, weight_granularity=format"
            )


def _label(fmt: FormatSpec | None) -> str:
    return "none" if fmt is None else f"'{fmt.name or fmt.element}' ({fmt.granularity})"


@register_quantize_handler(LLMInt8Config)
def _quantize(
    model: nn.Module,
    config: LLMInt8Config,
    targets: dict[str, nn.Linear],
    batches: list[Tensor],
    result: QuantizeResult,
) -> None:
    for linear in targets.values():
        make_llm_int8(linear, config.threshold, config.outlier_dtype, config.outlier_weights)
