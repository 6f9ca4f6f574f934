"""Scale, then round: a tensor's scales for a format along an axis, and rounding with given scales.

Every scaled quantization runs in these two passes, and fake_quant and quantize are built from them, so an
algorithm that fixes the scales before it rounds (GPTQ, one column at a time; SmoothQuant) reuses the same,
oracle-tested arithmetic by calling `compute_scales` and `round_with_scales`.

Internally the values run in granule layout: x with the quantization axis last, split into (..., granules,
granule width). Defined behaviour for special inputs (documented in docs/formats.md and tested): NaN stays
NaN; +-inf saturates to +-max*scale when the format saturates, else becomes inf (formats with inf) or NaN;
see tradeoffs.formats.scale_rules for the scales themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tradeoffs.errors import ConfigError
from tradeoffs.formats.element import round_to_element
from tradeoffs.formats.registry import get_format
from tradeoffs.formats.scale_rules import effective_scale, granule_scales, grid_factor, multiplies_by_power_of_two
from tradeoffs.formats.spec import FormatSpec


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


def _plain_cast(spec: FormatSpec) -> bool:
    return spec.is_cast and spec.rounding == "nearest"


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


def round_elements(x: torch.Tensor, scales: Scales, noise: torch.Tensor | None) -> torch.Tensor:
    """x's grid values in granule layout (value = element x scale), `noise` with the axis last."""
    axis = scales.axis
    g = to_granules(x, scales.block_scale.shape[axis] if scales.block_scale.ndim else 1, axis)
    zero = None if scales.zero_point is None else in_granules(scales.zero_point, axis)
    grid = None if scales.reciprocal is None else in_granules(scales.reciprocal, axis)
    draws = None if noise is None else noise.reshape(g.shape)
    return _round_granules(g, in_granules(scales.scale, axis), grid, zero, scales.spec, draws)


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


def round_values(x: torch.Tensor, scales: Scales, noise: torch.Tensor | None) -> torch.Tensor:
    """round_with_scales without the checks, `noise` with the axis last (the compiled passes call it)."""
    if _plain_cast(scales.spec):
        return _cast(x, scales.spec)
    return restore(round_elements(x, scales, noise) * in_granules(scales.scale, scales.axis), x, scales.axis)


def draw_noise(x: torch.Tensor, spec: FormatSpec, axis: int, generator: torch.Generator | None) -> torch.Tensor | None:
    """The uniform [0, 1) draws of stochastic rounding, one per value of x with the axis last (None for
    RNE); drawn before the arithmetic so that compiled code, which cannot take a generator, rounds with the
    same draws."""
    if spec.rounding != "stochastic":
        return None
    shape = x.movedim(axis, -1).shape
    return torch.rand(shape, generator=generator, device=x.device, dtype=torch.float32)


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


def fake_quant_eager(x: torch.Tensor, spec: FormatSpec, axis: int, noise: torch.Tensor | None) -> torch.Tensor:
    """fake_quant's arithmetic: compute the scales, then round with them (`noise` drawn by draw_noise)."""
    draws = None if noise is None else noise.movedim(-1, axis)
    return round_with_scales(x, compute_scales(x, spec, axis=axis), noise=draws)
