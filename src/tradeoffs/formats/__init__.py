"""Number formats: element grids (INT, minifloats), scaled and block formats (MX, NV), rounding, rotations.

Public API: get_format, fake_quant, quantize/QTensor, FormatSpec (and its ScaleRule), hadamard_rotate, and the
two passes that fake_quant and quantize are built from: compute_scales (a tensor's Scales) and round_with_scales;
fake_quant_group, several fake_quants in one compiled graph (a training step's quantizers).
"""

from tradeoffs.formats.compiled import fake_quant_group
from tradeoffs.formats.quantize import QTensor, compile_failure, fake_quant, quantize, quantize_with_scales
from tradeoffs.formats.registry import format_names, get_format
from tradeoffs.formats.rotation import hadamard_matrix, hadamard_rotate, is_power_of_two
from tradeoffs.formats.scales import Scales, compute_scale, compute_scales, round_with_scales
from tradeoffs.formats.spec import ElementFormat, FormatSpec, ScaleRule, parse_element

__all__ = [
    "ElementFormat",
    "FormatSpec",
    "QTensor",
    "ScaleRule",
    "Scales",
    "compile_failure",
    "compute_scale",
    "compute_scales",
    "fake_quant",
    "fake_quant_group",
    "format_names",
    "get_format",
    "hadamard_matrix",
    "hadamard_rotate",
    "is_power_of_two",
    "parse_element",
    "quantize",
    "quantize_with_scales",
    "round_with_scales",
]
