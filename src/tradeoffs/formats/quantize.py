"""Quantization entry points: fake_quant (quantize-dequantize, eager or compiled), quantize and QTensor
(integer codes and scales).

Both are compute_scales then round_with_scales (tradeoffs.formats.scales, the scale rules included), the
torch.compile kernels in tradeoffs.formats.compiled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tradeoffs.errors import ConfigError
from tradeoffs.formats.codes import decode, encode
from tradeoffs.formats.compiled import compile_failure, compiled_fake_quant
from tradeoffs.formats.registry import get_format
from tradeoffs.formats.scales import (
    Scales,
    checked_draws,
    compute_scales,
    draw_noise,
    effective_scale,
    fake_quant_eager,
    in_granules,
    into,
    normalized_axis,
    restore,
    round_elements,
)
from tradeoffs.formats.spec import FormatSpec

__all__ = ["QTensor", "compile_failure", "fake_quant", "quantize", "quantize_with_scales"]


def fake_quant(
    x: torch.Tensor,
    fmt: FormatSpec | str,
    *,
    axis: int = -1,
    generator: torch.Generator | None = None,
    compiled: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Quantize then dequantize `x` in format `fmt` along `axis`; same shape and dtype as `x`.

    `axis` is the dimension that granules run along (blocks and channel reductions). Stochastic rounding
    draws from `generator` (seed it for reproducible runs). `compiled=True` runs the same arithmetic fused
    by torch.compile (bit-identical, stochastic rounding included: its draws are taken before; compiled once
    per format, axis and input shape, in seconds); where compilation is unavailable it warns once and stays
    eager. `out`, a tensor of x's shape and dtype, receives the result (compiled: written directly, no
    allocation).
    """
    spec = get_format(fmt)
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or out.device != x.device):
        raise ValueError(
            f"fake_quant: out must match x: got shape {tuple(out.shape)}, {out.dtype}, {out.device} for "
            f"x of shape {tuple(x.shape)}, {x.dtype}, {x.device}"
        )
    axis = normalized_axis(x, axis)
    noise = draw_noise(x, spec, axis, generator)
    if compiled and (y := compiled_fake_quant(x, spec, axis, noise, out)) is not None:
        return y
    return into(fake_quant_eager(x, spec, axis, noise), out)


@dataclass
class QTensor:
    """A quantized tensor: integer codes (bit patterns for minifloats), scales and the format.

    codes, block_scale and zero_point are in granule layout: the quantization axis last, split into
    (..., granules, granule width) for the codes and (..., granules, 1) for the scales.
    """

    codes: torch.Tensor
    block_scale: torch.Tensor
    tensor_scale: torch.Tensor | None
    zero_point: torch.Tensor | None
    spec: FormatSpec
    axis: int
    shape: tuple[int, ...]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Back to a dense tensor of the original shape."""
        elements = decode(self.codes, self.spec.element_format)
        if self.zero_point is not None:
            elements = elements - self.zero_point
        scale = effective_scale(self.block_scale, self.tensor_scale)
        values = torch.where(scale > 0, elements * scale, torch.zeros_like(elements))
        return restore(values, torch.empty(self.shape, dtype=dtype, device="meta"), self.axis)

    def bits_per_element(self) -> float:
        """Storage cost including scales (and zero points), for this tensor's quantization axis length."""
        return self.spec.bits_per_element(self.shape[self.axis])


def quantize_with_scales(
    x: torch.Tensor,
    scales: Scales,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> QTensor:
    """Quantize `x` with the given scales (from compute_scales, or a slice's from Scales.for_slice) into a
    QTensor of integer codes: round_with_scales, as codes."""
    spec, axis = scales.spec, scales.axis
    if spec.is_cast:
        raise ConfigError(f"quantize: '{spec.element}' is a plain cast with no codes; use fake_quant")
    elements = round_elements(x, scales, checked_draws(x, scales, noise, generator))
    zero_point = None if scales.zero_point is None else in_granules(scales.zero_point, axis)
    codes = encode(elements if zero_point is None else elements + zero_point, spec.element_format)
    block_scale = in_granules(scales.block_scale, axis)
    return QTensor(codes, block_scale, scales.tensor_scale, zero_point, spec, axis, tuple(x.shape))


def quantize(
    x: torch.Tensor, fmt: FormatSpec | str, *, axis: int = -1, generator: torch.Generator | None = None
) -> QTensor:
    """Quantize `x` into a QTensor holding integer codes and scales (see fake_quant for the arguments)."""
    return quantize_with_scales(x, compute_scales(x, fmt, axis=axis), generator=generator)
