"""Post-training quantization of nn.Modules with any format of tradeoffs.formats: round-to-nearest, GPTQ,
SmoothQuant, Hadamard rotation, LLM.int8(); specs per operand; function-preserving outlier injection.

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
    SmoothQuantConfig,
    method_config,
    needs_calibration,
)
from tradeoffs.quant.gptq import HessianAccumulator, gptq_quantize_weight, hessian
from tradeoffs.quant.layers import LLMInt8Linear, QuantizedLinear
from tradeoffs.quant.spec import SPECS, QuantSpec, get_spec, spec_names
from tradeoffs.quant.transforms import OutlierConfig, inject_outliers, smooth

__all__ = [
    "GPTQ",
    "METHODS",
    "SPECS",
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
    "SmoothQuantConfig",
    "check_config",
    "get_spec",
    "gptq_quantize_weight",
    "hessian",
    "inject_outliers",
    "method_config",
    "needs_calibration",
    "quantize_",
    "smooth",
    "spec_names",
]
