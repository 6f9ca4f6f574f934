"""Number formats: element grids (INT, minifloats), scaled and block formats (MX, NV), rounding, rotations.

Public API: get_format, fake_quant, quantize/QTensor, FormatSpec, hadamard_rotate.
"""

from tradeoffs.formats.quantize import QTensor, compute_scale, fake_quant, quantize
from tradeoffs.formats.registry import format_names, get_format
from tradeoffs.formats.rotation import hadamard_matrix, hadamard_rotate
from tradeoffs.formats.spec import ElementFormat, FormatSpec, parse_element

__all__ = [
    "ElementFormat",
    "FormatSpec",
    "QTensor",
    "compute_scale",
    "fake_quant",
    "format_names",
    "get_format",
    "hadamard_matrix",
    "hadamard_rotate",
    "parse_element",
    "quantize",
]
