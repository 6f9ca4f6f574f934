"""Bit patterns of element values: integers as themselves, minifloats as sign|exponent|mantissa codes."""

from __future__ import annotations

import torch

from tradeoffs.formats.element import floor_log2, pow2
from tradeoffs.formats.spec import ElementFormat


def encode(values: torch.Tensor, element: ElementFormat) -> torch.Tensor:
    """Codes (int32) of values that lie on `element`'s grid (as produced by round_to_element)."""
    if element.kind == "int":
        return values.to(torch.int32)
    m, e_bits = element.man_bits, element.exp_bits
    magnitude = values.abs()
    exponent = floor_log2(magnitude).clamp(min=element.min_exponent)
    normal = magnitude >= pow2(torch.full_like(exponent, element.min_exponent))
    biased = torch.where(normal, exponent + element.bias, 0)
    mantissa = magnitude / pow2(exponent - m)  # in [2^m, 2^(m+1)) for normals, [0, 2^m) for subnormals
    mantissa = torch.where(normal, mantissa - 2**m, mantissa).to(torch.int32)
    code = (biased << m) | mantissa
    top = 2**e_bits - 1
    if element.has_inf:
        code = torch.where(torch.isinf(values), top << m, code)
    if element.has_nan:
        nan_code = (top << m) | (2 ** (m - 1) if element.special == "ieee" else 2**m - 1)
        code = torch.where(torch.isnan(values), nan_code, code)
    sign = torch.signbit(values).to(torch.int32) << (e_bits + m)
    return code | sign


def decode(codes: torch.Tensor, element: ElementFormat) -> torch.Tensor:
    """Float32 values of `element` codes (the inverse of encode)."""
    if element.kind == "int":
        return codes.to(torch.float32)
    m, e_bits = element.man_bits, element.exp_bits
    codes = codes.to(torch.int32)
    biased = (codes >> m) & (2**e_bits - 1)
    mantissa = (codes & (2**m - 1)).to(torch.float32)
    exponent = torch.where(biased > 0, biased - element.bias, element.min_exponent)
    significand = torch.where(biased > 0, mantissa + 2**m, mantissa)
    magnitude = significand * pow2(exponent - m)
    top = 2**e_bits - 1
    if element.special == "ieee":
        special = torch.where(mantissa == 0, float("inf"), float("nan"))
        magnitude = torch.where(biased == top, special, magnitude)
    elif element.special == "fn":
        magnitude = torch.where((biased == top) & (mantissa == 2**m - 1), float("nan"), magnitude)
    sign = (codes >> (e_bits + m)) & 1
    return torch.where(sign == 1, -magnitude, magnitude)
