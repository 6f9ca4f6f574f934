"""Post-training quantization of nn.Modules with any format of tradeoffs.formats: round-to-nearest, GPTQ,
SmoothQuant, Hadamard rotation, LLM.int8(), searched minifloat weights; specs per operand; function-preserving
outlier injection.

    from tradeoffs.quant import GPTQ, GPTQConfig, get_spec, quantize_
    quantize_(model, GPTQConfig(get_spec("W4A16", weight="int4_asym")), calibration=tokens)

Each method is a module of this package (rtn, gptq, smoothquant, rotation, llm_int8, search) holding its config
and the handler it registers for that config type; importing the package imports every module, so METHODS lists
them all. See docs/quantization.md.
"""

import importlib
import pkgutil

from tradeoffs.quant.api import (
    METHODS,
    QuantizeResult,
    check_config,
    method_config,
    needs_calibration,
    quantize_,
    register_quantize_handler,
)
from tradeoffs.quant.gptq import GPTQ, GPTQConfig, gptq_quantize_weight
from tradeoffs.quant.layers import LLMInt8Linear, QuantizedLinear
from tradeoffs.quant.llm_int8 import LLMInt8Config
from tradeoffs.quant.rotation import RotationConfig
from tradeoffs.quant.rtn import RTNConfig
from tradeoffs.quant.search import (
    DEFAULT_CLIP_RATIOS,
    FormatSearch,
    SearchConfig,
    SearchResult,
    candidate_elements,
    check_search,
    search_quantize,
)
from tradeoffs.quant.sequential import HessianAccumulator, hessian
from tradeoffs.quant.smoothquant import SmoothQuantConfig
from tradeoffs.quant.spec import SPECS, QuantSpec, get_spec, spec_names
from tradeoffs.quant.transforms import OutlierConfig, inject_outliers, smooth

for _module in pkgutil.iter_modules(__path__):  # every method module registers its handler on import
    importlib.import_module(f"{__name__}.{_module.name}")

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
    "register_quantize_handler",
    "search_quantize",
    "smooth",
    "spec_names",
]
