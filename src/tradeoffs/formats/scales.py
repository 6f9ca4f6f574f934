"""Scales: a tensor's scales for a format along an axis, by the format's scale rule, and rounding with them.

Every scaled quantization runs in two passes, and fake_quant and quantize are built from them: compute_scales
(each granule's scale by the format's ScaleRule, in the format's scale format) then round_with_scales. An
algorithm that fixes the scales before it rounds (GPTQ, one column at a time; SmoothQuant) reuses the same,
oracle-tested arithmetic by calling the two passes itself.

The scale rules: absmax (amax / max_element, rounded to the scale format), the power-of-two rules (floor,
ceil, quartet, rms with E8M0 scales), two-level NVFP4 scaling (an FP32 tensor scale over narrow block scales)
and the asymmetric integer scale with its zero point.

Internally the values run in granule layout: x with the quantization axis last, split into (..., granules,
granule width); the rules reduce along the last dimension with kept dimensions, or to a 0-d tensor for one
scale per tensor.

Defined behaviour for special inputs (documented in docs/formats.md and tested):
- amax of a granule is taken over finite values only; an all-zero (or all non-finite) granule gets the
  smallest scale of its rule (2^-127 for power-of-two rules, 1 for absmax) and quantizes to zeros;
- a block scale that rounds to zero in its scale format (a block tiny against the tensor's amax under a
  two-level scale) quantizes its block to zeros;
- NaN stays NaN; +-inf saturates to +-max*scale when the format saturates, else becomes inf (formats with
  inf) or NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from tradeoffs.errors import ConfigError
from tradeoffs.formats.element import floor_log2, pow2, round_to_element
from tradeoffs.formats.registry import get_format
from tradeoffs.formats.spec import FormatSpec, ScaleRule

E8M0_MIN_EXPONENT, E8M0_MAX_EXPONENT = -127, 127


# The Scales of a tensor, and the granule layout the arithmetic runs in.


@dataclass(frozen=True, eq=False)
class Scales:
    """A tensor's scales in one format along one axis (from compute_scales), to round it by round_with_scales.

    Layout: the per-granule tensors (block_scale, zero_point, reciprocal, scale) have the shape of x with the
    quantization axis replaced by the number of granules along it (axis length / block_size for block
    granularity, 1 for channel granularity), and every dimension 1 for tensor granularity; the granule at
    index i along the axis covers elements [i * granule_width, (i + 1) * granule_width). `for_slice` gives the
    scales of a slice of x along the axis (a column, a group of columns).
    """

    block_scale: torch.Tensor  # the stored per-granule scale: a value of the spec's scale format
    tensor_scale: torch.Tensor | None  # two-level formats (NVFP4, NVINT4): the 0-d FP32 second-level scale
    zero_point: torch.Tensor | None  # asymmetric integers: the code of zero, value = (code - zero) x scale
    reciprocal: torch.Tensor | None  # the exact multiplier onto the grid (power-of-two, two-level), else None
    spec: FormatSpec
    axis: int  # the quantization axis, non-negative
    granule_width: int  # elements per granule along the axis

    @property
    def scale(self) -> torch.Tensor:
        """The effective FP32 scale, block_scale x tensor_scale: value = element x scale."""
        return effective_scale(self.block_scale, self.tensor_scale)

    def for_slice(self, start: int, stop: int) -> Scales:
        """The scales of x.narrow(axis, start, stop - start), elements [start, stop) along the axis: to round
        part of x with the scales of the whole (GPTQ rounds column j with `for_slice(j, j + 1)`)."""
        axis, width = self.axis, self.granule_width
        length = self.block_scale.shape[axis] * width if self.block_scale.ndim else width
        if not 0 <= start < stop <= length:
            raise ValueError(f"Scales.for_slice({start}, {stop}): need 0 <= start < stop <= {length}")
        first, last = start // width, -(-stop // width)
        if last - first == 1:  # within one granule
            return self._mapped(lambda t: t.narrow(axis, first, 1), stop - start)
        if start % width == 0 and stop % width == 0:
            return self._mapped(lambda t: t.narrow(axis, first, last - first), width)

        def per_element(t: torch.Tensor) -> torch.Tensor:
            covering = t.narrow(axis, first, last - first).repeat_interleave(width, dim=axis)
            return covering.narrow(axis, start - first * width, stop - start)

        return self._mapped(per_element, 1)

    def _mapped(self, per_granule: Callable[[torch.Tensor], torch.Tensor], granule_width: int) -> Scales:
        def apply(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else per_granule(t)

        return dataclasses.replace(
            self,
            block_scale=per_granule(self.block_scale),
            zero_point=apply(self.zero_point),
            reciprocal=apply(self.reciprocal),
            granule_width=granule_width,
        )


def effective_scale(block_scale: torch.Tensor, tensor_scale: torch.Tensor | None) -> torch.Tensor:
    """The scale that multiplies the elements: the block scale times the tensor scale of two-level formats."""
    return block_scale if tensor_scale is None else block_scale * tensor_scale


def normalized_axis(x: torch.Tensor, axis: int) -> int:
    """`axis` of x as a non-negative index (a 0-d tensor has the one axis 0)."""
    ndim = max(x.ndim, 1)
    if not -ndim <= axis < ndim:
        raise IndexError(f"axis {axis} is out of range for a tensor of shape {tuple(x.shape)}")
    return axis % ndim


def _axis_length(x: torch.Tensor, axis: int) -> int:
    """Length of x along `axis` (1 for a 0-d tensor)."""
    return x.shape[axis] if x.ndim else 1


def to_granules(x: torch.Tensor, groups: int, axis: int) -> torch.Tensor:
    """x as float32 in granule layout: the quantization axis last, split into `groups` granules."""
    moved = x.float().movedim(axis, -1)
    return moved.reshape(*moved.shape[:-1], groups, -1)


def _along_axis(t: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    """Per-granule values from granule layout (..., granules, 1), or 0-d for one scale, to the Scales layout."""
    return t.reshape((1,) * ndim) if t.ndim == 0 or ndim == 0 else t.squeeze(-1).movedim(-1, axis)


def in_granules(t: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-granule values from the Scales layout to granule layout (the inverse of _along_axis)."""
    return t if t.ndim == 0 else t.movedim(axis, -1).unsqueeze(-1)


def restore(values: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
    """Granule layout back to the shape and dtype of `like`; no Python arithmetic on sizes, so it also
    compiles with dynamic shapes."""
    return values.reshape(like.movedim(axis, -1).shape).movedim(-1, axis).to(like.dtype)


def into(y: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """y, or y copied into `out` when given."""
    return y if out is None else out.copy_(y)


# The first pass: each granule's scale by the format's rule.


def compute_scales(
    x: torch.Tensor, fmt: FormatSpec | str, *, axis: int = -1, tensor_scale: torch.Tensor | None = None
) -> Scales:
    """The scales of `x` in format `fmt` along `axis` (block, channel or tensor scales, the two-level tensor
    scale, zero points): the first pass of quantization, as fake_quant and quantize take it.

    `tensor_scale` (two-level formats only) replaces the tensor's own second-level scale, e.g. one computed
    once over a whole weight while its blocks are scaled group by group. Plain casts (bf16, fp16, fp32)
    get unit scales."""
    spec = get_format(fmt)
    if tensor_scale is not None and not spec.tensor_scale:
        raise ConfigError(
            f"compute_scales: tensor_scale given for format '{spec.name or spec.element}', which has no "
            "second-level scale (format.tensor_scale: false)"
        )
    return scales_of(x, spec, normalized_axis(x, axis), tensor_scale=tensor_scale)


def scales_of(
    x: torch.Tensor,
    spec: FormatSpec,
    axis: int,
    block_amax: torch.Tensor | None = None,
    tensor_scale: torch.Tensor | None = None,
) -> Scales:
    """compute_scales for a resolved spec and a non-negative axis, from the blocks' amax when the caller has
    it (granule layout: the compiled passes take it in a pass of their own)."""
    length = _axis_length(x, axis)
    if _plain_cast(spec):  # bf16/fp16/fp32 casts: unit scales, rounding ignores them
        unit = torch.ones((1,) * x.ndim, device=x.device)
        return Scales(unit, None, None, None, spec, axis, length)
    width = length
    if spec.granularity == "block":
        width = spec.block_size
        if length % width:
            raise ConfigError(
                f"format '{spec.name or spec.element}': block_size {width} does not divide the quantization "
                f"axis ({axis}) of length {length} in shape {tuple(x.shape)}"
            )
    parts = granule_scales(to_granules(x, length // width, axis), spec, amax=block_amax, tensor_scale=tensor_scale)

    def along(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else _along_axis(t, x.ndim, axis)

    block_scale, zero_point, reciprocal = along(parts.block_scale), along(parts.zero_point), along(parts.reciprocal)
    return Scales(block_scale, parts.tensor_scale, zero_point, reciprocal, spec, axis, width)


def _plain_cast(spec: FormatSpec) -> bool:
    return spec.is_cast and spec.rounding == "nearest"


class GranuleScales(NamedTuple):
    """Scales in granule layout (broadcastable against the granules); see tradeoffs.formats.Scales."""

    block_scale: torch.Tensor
    tensor_scale: torch.Tensor | None
    zero_point: torch.Tensor | None
    reciprocal: torch.Tensor | None


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
        amax = _finite_amax(g, dims) if spec.scale_rule != ScaleRule.rms else spec.clip_ratio * _finite_rms(g, dims)
    if spec.tensor_scale:
        # Two-level scaling in the op order of torchao's NVFP4 reference (and the MSLK/TE kernels):
        # tensor scale = amax / (max_elem * max_scale), block scale = e4m3((amax_b / max_elem) / tensor scale),
        # values scaled by the reciprocal (1 / tensor scale) / block scale.
        scale_max = spec.scale_element.max_value
        if tensor_scale is None:
            tensor_amax = amax.amax() if spec.scale_rule == ScaleRule.absmax else _finite_amax(g, None)
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


def _asymmetric_scales(g: torch.Tensor, spec: FormatSpec, dims: tuple[int, ...] | None) -> GranuleScales:
    """Asymmetric integer grid: s = (max - min) / (2^b - 1), zero = round(-min / s), min <= 0 <= max."""
    finite = torch.where(torch.isfinite(g), g, 0.0)
    low = (finite.amin() if dims is None else finite.amin(dim=dims, keepdim=True)).clamp(max=0)
    high = (finite.amax() if dims is None else finite.amax(dim=dims, keepdim=True)).clamp(min=0)
    scale = (high - low) / spec.element_format.max_value
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return GranuleScales(scale, None, torch.round(-low / scale), None)


def multiplies_by_power_of_two(spec: FormatSpec) -> bool:
    """Whether the spec's scales are exact powers of two 2^(k - shift) applied as a multiplication by the
    exact reciprocal 2^-k, then by 2^shift (floor, ceil, rms with E8M0): every such scale is positive."""
    rule = spec.scale_rule
    return not spec.asymmetric and (
        rule in (ScaleRule.floor, ScaleRule.ceil) or (rule == ScaleRule.rms and spec.scale_format == "e8m0")
    )


def grid_factor(spec: FormatSpec) -> float:
    """The exact power of two 2^shift applied after the reciprocal of a power-of-two scale (1 otherwise)."""
    return 2.0 ** _grid_shift(spec) if multiplies_by_power_of_two(spec) else 1.0


def _grid_shift(spec: FormatSpec) -> int:
    """Integer elements under power-of-two rules are read as fixed point j * 2^-shift (MXINT: emax_elem = 0),
    so that the scale exponent, and its clamp, is the spec's; the scale on the integer grid is 2^shift lower."""
    element = spec.element_format
    return element.emax if element.kind == "int" and spec.scale_rule != ScaleRule.rms else 0


def _power_of_two_scale(amax: torch.Tensor, spec: FormatSpec) -> torch.Tensor | None:
    """For the power-of-two scale rules (floor, ceil, quartet, rms with E8M0): 2^k, k in [-127, 127] the E8M0
    exponent, the scale being 2^(k - shift) (/ 0.75 for quartet); None for the other rules."""
    element = spec.element_format
    shift = _grid_shift(spec)
    if spec.scale_rule in (ScaleRule.floor, ScaleRule.quartet) and element.emax >= shift:
        # 2^(floor(log2 amax) - emax_elem): the exponent bits of amax times an exact power of two. With
        # emax_elem >= 0, k <= 127 for finite amax, and zero and FP32-subnormal amax (bits 0) have k < -127:
        # clamping the product to 2^-127 is the exponent clamp.
        binade = (amax.view(torch.int32) & 0x7F800000).view(torch.float32)
        return (binade * 2.0 ** (shift - element.emax)).clamp(min=2.0**E8M0_MIN_EXPONENT)
    if spec.scale_rule in (ScaleRule.floor, ScaleRule.quartet):  # elements below 1 (a large bias): from the exponent
        exponent = floor_log2(amax) - (element.emax - shift)
    elif spec.scale_rule == ScaleRule.rms and spec.scale_format == "e8m0":
        # clamped as a float first: log2 of an overflowed (inf) RMS has no int32 value
        exponent = torch.round(torch.log2(amax / element.max_value)).clamp(-128, 128).to(torch.int32)
    elif spec.scale_rule == ScaleRule.ceil:
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
        return scale / 0.75 if spec.scale_rule == ScaleRule.quartet else scale
    scale = _round_scale(amax / spec.element_format.max_value, spec)
    return torch.where(amax > 0, scale, torch.ones_like(scale))


def _round_scale(scale: torch.Tensor, spec: FormatSpec) -> torch.Tensor:
    """Round a positive FP32 scale to the spec's scale format (saturating, round-to-nearest-even)."""
    scale_element = spec.scale_element
    if scale_element is None:
        return scale
    return round_to_element(scale, scale_element, saturate=True)


# The second pass: rounding with given scales.


def round_with_scales(
    x: torch.Tensor,
    scales: Scales,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x quantized with the given scales and dequantized (x's shape and dtype): the second pass of
    quantization. round_with_scales(x, compute_scales(x, fmt)) is fake_quant(x, fmt), bit for bit, and
    rounding a slice of x with `scales.for_slice` gives the same bits as the whole restricted to the slice.

    Stochastic rounding takes `noise`, uniform [0, 1) draws of x's shape, or draws them from `generator`
    as fake_quant does."""
    return round_values(x, scales, checked_draws(x, scales, noise, generator))


def checked_draws(
    x: torch.Tensor, scales: Scales, noise: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor | None:
    """Check that `scales` cover x, and return the stochastic rounding draws with the axis last: `noise`
    (x's shape) when given, else drawn from `generator` (None for RNE)."""
    _check_fit(x, scales)
    spec, axis = scales.spec, scales.axis
    if noise is None:
        return draw_noise(x, spec, axis, generator)
    if spec.rounding != "stochastic" or noise.shape != x.shape:
        raise ValueError(
            f"noise of shape {tuple(noise.shape)} needs stochastic rounding (format rounding: {spec.rounding}) "
            f"and x's shape {tuple(x.shape)}"
        )
    return noise.movedim(axis, -1)


def _check_fit(x: torch.Tensor, scales: Scales) -> None:
    """Raise ValueError unless the scales' layout covers x (see Scales)."""
    shape, scale_shape, axis = tuple(x.shape), tuple(scales.block_scale.shape), scales.axis
    fits = len(scale_shape) == len(shape) and all(
        size * scales.granule_width == length if dim == axis else size in (1, length)
        for dim, (size, length) in enumerate(zip(scale_shape, shape, strict=True))
    )
    if not fits:
        raise ValueError(
            f"scales of shape {scale_shape} ({scales.granule_width} elements per granule "
            f"along axis {axis}) do not cover x of shape {shape}; take a slice's scales with Scales.for_slice"
        )


def draw_noise(x: torch.Tensor, spec: FormatSpec, axis: int, generator: torch.Generator | None) -> torch.Tensor | None:
    """The uniform [0, 1) draws of stochastic rounding, one per value of x with the axis last (None for
    RNE); drawn before the arithmetic so that compiled code, which cannot take a generator, rounds with the
    same draws."""
    if spec.rounding != "stochastic":
        return None
    shape = x.movedim(axis, -1).shape
    return torch.rand(shape, generator=generator, device=x.device, dtype=torch.float32)


def round_values(x: torch.Tensor, scales: Scales, noise: torch.Tensor | None) -> torch.Tensor:
    """round_with_scales without the checks, `noise` with the axis last (the compiled passes call it)."""
    if _plain_cast(scales.spec):
        return _cast(x, scales.spec)
    return restore(round_elements(x, scales, noise) * in_granules(scales.scale, scales.axis), x, scales.axis)


def _cast(x: torch.Tensor, spec: FormatSpec) -> torch.Tensor:
    """bf16/fp16 elements: a rounding cast with explicit saturation; fp32: the identity."""
    if spec.is_identity:
        return x
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[spec.element]
    source = x.float()
    if spec.saturate:
        max_value = spec.element_format.max_value
        source = source.clamp(-max_value, max_value)
    return source.to(dtype).to(x.dtype)


def round_elements(x: torch.Tensor, scales: Scales, noise: torch.Tensor | None) -> torch.Tensor:
    """x's grid values in granule layout (value = element x scale), `noise` with the axis last."""
    axis = scales.axis
    g = to_granules(x, scales.block_scale.shape[axis] if scales.block_scale.ndim else 1, axis)
    zero = None if scales.zero_point is None else in_granules(scales.zero_point, axis)
    grid = None if scales.reciprocal is None else in_granules(scales.reciprocal, axis)
    draws = None if noise is None else noise.reshape(g.shape)
    return _round_granules(g, in_granules(scales.scale, axis), grid, zero, scales.spec, draws)


def _round_granules(
    g: torch.Tensor,
    scale: torch.Tensor,
    reciprocal: torch.Tensor | None,
    zero_point: torch.Tensor | None,
    spec: FormatSpec,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """Granules divided by their scales and rounded to the element grid (zero where the scale is 0), less
    the zero point: the grid values, value = element x scale. Scales in granule layout."""
    element = spec.element_format
    stochastic = spec.rounding == "stochastic"
    if zero_point is not None:
        codes = round_to_element(g / scale + zero_point, element, stochastic=stochastic, noise=noise)
        return codes - zero_point
    scaled = g / torch.where(scale > 0, scale, torch.ones_like(scale)) if reciprocal is None else g * reciprocal
    factor = grid_factor(spec)
    if factor != 1.0:
        scaled = scaled * factor
    elements = round_to_element(scaled, element, saturate=spec.saturate, stochastic=stochastic, noise=noise)
    if multiplies_by_power_of_two(spec):  # every scale > 0: no zero-scale granules
        return elements
    return torch.where(scale > 0, elements, torch.zeros_like(elements))


def fake_quant_eager(x: torch.Tensor, spec: FormatSpec, axis: int, noise: torch.Tensor | None) -> torch.Tensor:
    """fake_quant's arithmetic: compute the scales, then round with them (`noise` drawn by draw_noise)."""
    draws = None if noise is None else noise.movedim(-1, axis)
    return round_with_scales(x, compute_scales(x, spec, axis=axis), noise=draws)
