"""Scale rules: each granule's scale from its values, by the format's rule, in the format's scale format.

The rules: absmax (amax / max_element, rounded to the scale format), the power-of-two rules (floor, ceil,
quartet, rms with E8M0 scales), two-level NVFP4 scaling (an FP32 tensor scale over narrow block scales) and
the asymmetric integer scale with its zero point. Pure tensor functions on granules: tensors whose last
dimension runs along one granule (tradeoffs.formats.scales lays them out), reduced with kept dimensions, or
to a 0-d tensor for one scale per tensor.

Defined behaviour for special inputs (documented in docs/formats.md and tested):
- amax of a granule is taken over finite values only; an all-zero (or all non-finite) granule gets the
  smallest scale of its rule (2^-127 for power-of-two rules, 1 for absmax) and quantizes to zeros;
- a block scale that rounds to zero in its scale format (a block tiny against the tensor's amax under a
  two-level scale) quantizes its block to zeros.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from tradeoffs.formats.element import floor_log2, pow2, round_to_element
from tradeoffs.formats.spec import FormatSpec

E8M0_MIN_EXPONENT, E8M0_MAX_EXPONENT = -127, 127


def _finite_amax(x: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    """max |x| over `dims` (None: all, to a 0-d tensor) ignoring NaN and inf, keeping reduced dims."""
    magnitude = x.abs()
    amax = magnitude.amax() if dims is None else magnitude.amax(dim=dims, keepdim=True)
    # The data-dependent test saves a pass in eager mode; compiled code filters always (no graph break).
    if torch.compiler.is_compiling() or not torch.isfinite(amax).all():
        magnitude = torch.where(magnitude < float("inf"), magnitude, 0.0)  # NaN compares false
        amax = magnitude.amax() if dims is None else magnitude.amax(dim=dims, keepdim=True)
    return amax


def _finite_rms(x: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    """RMS over `dims` (None: all) of the finite values, keeping reduced dims."""
    finite = torch.where(torch.isfinite(x), x, 0.0)
    square = finite.square()
    mean = square.mean() if dims is None else square.mean(dim=dims, keepdim=True)
    return mean.sqrt()


def _round_scale(scale: torch.Tensor, spec: FormatSpec) -> torch.Tensor:
    """Round a positive FP32 scale to the spec's scale format (saturating, round-to-nearest-even)."""
    scale_element = spec.scale_element
    if scale_element is None:
        return scale
    return round_to_element(scale, scale_element, saturate=True)


def _grid_shift(spec: FormatSpec) -> int:
    """Integer elements under power-of-two rules are read as fixed point j * 2^-shift (MXINT: emax_elem = 0),
    so that the scale exponent, and its clamp, is the spec's; the scale on the integer grid is 2^shift lower."""
    element = spec.element_format
    return element.emax if element.kind == "int" and spec.scale_rule != "rms" else 0


def multiplies_by_power_of_two(spec: FormatSpec) -> bool:
    """Whether the spec's scales are exact powers of two 2^(k - shift) applied as a multiplication by the
    exact reciprocal 2^-k, then by 2^shift (floor, ceil, rms with E8M0): every such scale is positive."""
    rule = spec.scale_rule
    return not spec.asymmetric and (rule in ("floor", "ceil") or (rule == "rms" and spec.scale_format == "e8m0"))


def grid_factor(spec: FormatSpec) -> float:
    """The exact power of two 2^shift applied after the reciprocal of a power-of-two scale (1 otherwise)."""
    return 2.0 ** _grid_shift(spec) if multiplies_by_power_of_two(spec) else 1.0


def _power_of_two_scale(amax: torch.Tensor, spec: FormatSpec) -> torch.Tensor | None:
    """For the power-of-two scale rules (floor, ceil, quartet, rms with E8M0): 2^k, k in [-127, 127] the E8M0
    exponent, the scale being 2^(k - shift) (/ 0.75 for quartet); None for the other rules."""
    element = spec.element_format
    shift = _grid_shift(spec)
    if spec.scale_rule in ("floor", "quartet") and element.emax >= shift:
        # 2^(floor(log2 amax) - emax_elem): the exponent bits of amax times an exact power of two. With
        # emax_elem >= 0, k <= 127 for finite amax, and zero and FP32-subnormal amax (bits 0) have k < -127:
        # clamping the product to 2^-127 is the exponent clamp.
        binade = (amax.view(torch.int32) & 0x7F800000).view(torch.float32)
        return (binade * 2.0 ** (shift - element.emax)).clamp(min=2.0**E8M0_MIN_EXPONENT)
    if spec.scale_rule in ("floor", "quartet"):  # elements below 1 (a large custom bias): from the exponent
        exponent = floor_log2(amax) - (element.emax - shift)
    elif spec.scale_rule == "rms" and spec.scale_format == "e8m0":
        # clamped as a float first: log2 of an overflowed (inf) RMS has no int32 value
        exponent = torch.round(torch.log2(amax / element.max_value)).clamp(-128, 128).to(torch.int32)
    elif spec.scale_rule == "ceil":
        mantissa, exponent = torch.frexp(amax / (element.max_value * 2.0**-shift))
        exponent = torch.where(mantissa == 0.5, exponent - 1, exponent)
    else:
        return None
    exponent = torch.where(amax > 0, exponent, E8M0_MIN_EXPONENT)
    return pow2(exponent.clamp(E8M0_MIN_EXPONENT, E8M0_MAX_EXPONENT))


def compute_scale(amax: torch.Tensor, spec: FormatSpec) -> torch.Tensor:
    """The per-granule scale (FP32 tensor) from the granule's amax, by the spec's rule and scale format.

    For scale_rule=rms, `amax` is the clipping threshold clip_ratio x RMS instead of the maximum."""
    power = _power_of_two_scale(amax, spec)
    if power is not None:
        shift = _grid_shift(spec)
        scale = power * 2.0**-shift if shift else power
        return scale / 0.75 if spec.scale_rule == "quartet" else scale
    scale = _round_scale(amax / spec.element_format.max_value, spec)
    return torch.where(amax > 0, scale, torch.ones_like(scale))


def effective_scale(block_scale: torch.Tensor, tensor_scale: torch.Tensor | None) -> torch.Tensor:
    """The scale that multiplies the elements: the block scale times the tensor scale of two-level formats."""
    return block_scale if tensor_scale is None else block_scale * tensor_scale


class GranuleScales(NamedTuple):
    """Scales in granule layout (broadcastable against the granules); see tradeoffs.formats.Scales."""

    block_scale: torch.Tensor
    tensor_scale: torch.Tensor | None
    zero_point: torch.Tensor | None
    reciprocal: torch.Tensor | None


def _asymmetric_scales(g: torch.Tensor, spec: FormatSpec, dims: tuple[int, ...] | None) -> GranuleScales:
    """Asymmetric integer grid: s = (max - min) / (2^b - 1), zero = round(-min / s), min <= 0 <= max."""
    finite = torch.where(torch.isfinite(g), g, 0.0)
    low = (finite.amin() if dims is None else finite.amin(dim=dims, keepdim=True)).clamp(max=0)
    high = (finite.amax() if dims is None else finite.amax(dim=dims, keepdim=True)).clamp(min=0)
    scale = (high - low) / spec.element_format.max_value
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return GranuleScales(scale, None, torch.round(-low / scale), None)


def granule_scales(
    g: torch.Tensor, spec: FormatSpec, *, amax: torch.Tensor | None = None, tensor_scale: torch.Tensor | None = None
) -> GranuleScales:
    """Each granule's scale by the spec's rule: from `amax` when the caller has it (the granules' finite amax,
    or clip ratio x RMS), and for two-level formats over `tensor_scale` when given (else the tensor's own)."""
    element = spec.element_format
    dims = None if spec.granularity == "tensor" else (-1,)
    if spec.asymmetric:
        return _asymmetric_scales(g, spec, dims)
    if amax is None:
        amax = _finite_amax(g, dims) if spec.scale_rule != "rms" else spec.clip_ratio * _finite_rms(g, dims)
    if spec.tensor_scale:
        # Two-level scaling in the op order of torchao's NVFP4 reference (and the MSLK/TE kernels):
        # tensor scale = amax / (max_elem * max_scale), block scale = e4m3((amax_b / max_elem) / tensor scale),
        # values scaled by the reciprocal (1 / tensor scale) / block scale.
        scale_max = spec.scale_element.max_value
        if tensor_scale is None:
            tensor_amax = amax.amax() if spec.scale_rule == "absmax" else _finite_amax(g, None)
            tensor_scale = torch.where(
                tensor_amax > 0, tensor_amax / (element.max_value * scale_max), torch.ones_like(tensor_amax)
            )
        block_scale = _round_scale(((amax / element.max_value) / tensor_scale).clamp(max=scale_max), spec)
        scale = effective_scale(block_scale, tensor_scale)
        reciprocal = torch.where(scale > 0, (1.0 / tensor_scale) / block_scale, 0.0)
        return GranuleScales(block_scale, tensor_scale, None, reciprocal)
    if not multiplies_by_power_of_two(spec):
        return GranuleScales(compute_scale(amax, spec), None, None, None)
    # A power-of-two scale 2^(k - shift) multiplies by the exact reciprocal 2^-k, then by 2^shift: the same
    # correctly rounded quotient as the division, without a division.
    power_of_two = _power_of_two_scale(amax, spec)
    shift = _grid_shift(spec)
    scale = power_of_two * 2.0**-shift if shift else power_of_two
    return GranuleScales(scale, None, None, 1.0 / power_of_two)
