"""Post-training quantization of nn.Modules with any format of tradeoffs.formats: round-to-nearest, GPTQ,
SmoothQuant, Hadamard rotation, LLM.int8(), searched minifloat weights; specs per operand; function-preserving
outlier injection.

    from tradeoffs.quant import GPTQ, GPTQConfig, get_spec, quantize_
    quantize_(model, GPTQConfig(get_spec("W4A16", weight="int4_asym")), calibration=tokens)

See docs/quantization.md.
"""

from tradeoffs.quant.api import QuantizeResult, check_config, quantize_
from tradeoffs.quant.config import (
    GPTQ,
    METHODS,
    GPTQConfig,
    LLMInt8Config,
    MethodConfig,
    RotationConfig,
    RTNConfig,
    SearchConfig,
    SmoothQuantConfig,
    method_config,
    needs_calibration,
)
from tradeoffs.quant.gptq import HessianAccumulator, gptq_quantize_weight, hessian
from tradeoffs.quant.layers import LLMInt8Linear, QuantizedLinear
from tradeoffs.quant.search import (
    DEFAULT_CLIP_RATIOS,
    FormatSearch,
    SearchResult,
    candidate_elements,
    check_search,
    search_quantize,
)
from tradeoffs.quant.spec import SPECS, QuantSpec, get_spec, spec_names
from tradeoffs.quant.transforms import OutlierConfig, inject_outliers, smooth

__all__ = [
    "DEFAULT_CLIP_RATIOS",
    "GPTQ",
    "METHODS",
    "SPECS",
    "FormatSearch",
    "GPTQConfig",
    "HessianAccumulator",
    "LLMInt8Config",
    "LLMInt8Linear",
    "MethodConfig",
    "OutlierConfig",
    "QuantSpec",
    "QuantizeResult",
    "QuantizedLinear",
    "RTNConfig",
    "RotationConfig",
    "SearchConfig",
    "SearchResult",
    "SmoothQuantConfig",
    "candidate_elements",
    "check_config",
    "check_search",
    "get_spec",
    "gptq_quantize_weight",
    "hessian",
    "inject_outliers",
    "method_config",
    "needs_calibration",
    "quantize_",
    "search_quantize",
    "smooth",
    "spec_names",
]
