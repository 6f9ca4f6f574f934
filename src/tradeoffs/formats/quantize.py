"""Scaled quantization: granularity, scale rules, scale formats, quantize-dequantize and integer codes.

`fake_quant` and `quantize` share one path (`_quantize`): reshape to granules along the axis, compute
each granule's scale by the format's rule, round the scaled values to the element grid.

Defined behaviour for special inputs (documented in docs/formats.md and tested):
- amax of a granule is taken over finite values only; an all-zero (or all non-finite) granule gets the
  smallest scale of its rule (2^-127 for power-of-two rules, 1 for absmax) and quantizes to zeros;
- NaN stays NaN; +-inf saturates to +-max*scale when the format saturates, else becomes inf (formats with
  inf) or NaN;
- a block scale that rounds to zero in its scale format (a block tiny against the tensor's amax under a
  two-level scale) quantizes its block to zeros.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tradeoffs.errors import ConfigError
from tradeoffs.formats.codes import decode, encode
from tradeoffs.formats.element import floor_log2, pow2, round_to_element
from tradeoffs.formats.registry import get_format
from tradeoffs.formats.spec import ElementFormat, FormatSpec

log = logging.getLogger(__name__)
E8M0_MIN_EXPONENT, E8M0_MAX_EXPONENT = -127, 127


def _finite_amax(x: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    """max |x| over `dims` (None: all) ignoring NaN and inf, keeping reduced dims."""
    magnitude = x.abs()
    amax = magnitude.amax() if dims is None else magnitude.amax(dim=dims, keepdim=True)
    # The data-dependent test saves a pass in eager mode; compiled code filters always (no graph break).
    if torch.compiler.is_compiling() or not torch.isfinite(amax).all():
        magnitude = torch.where(magnitude < float("inf"), magnitude, 0.0)  # NaN compares false
        amax = magnitude.amax() if dims is None else magnitude.amax(dim=dims, keepdim=True)
    return amax


def _round_scale(scale: torch.Tensor, spec: FormatSpec) -> torch.Tensor:
    """Round a positive FP32 scale to the spec's scale format (saturating, round-to-nearest-even)."""
    scale_element = spec.scale_element
    if scale_element is None:
        return scale
    return round_to_element(scale, scale_element, saturate=True)


def _granule_rms(x: torch.Tensor, dims: tuple[int, ...] | None) -> torch.Tensor:
    """RMS over `dims` (None: all) of the finite values, keeping reduced dims."""
    finite = torch.where(torch.isfinite(x), x, 0.0)
    square = finite.square()
    mean = square.mean() if dims is None else square.mean(dim=dims, keepdim=True)
    return mean.sqrt()


def _power_of_two_scale(amax: torch.Tensor, spec: FormatSpec) -> tuple[torch.Tensor, int] | None:
    """For the power-of-two scale rules (floor, ceil, quartet, rms with E8M0): 2^k, k in [-127, 127] the
    E8M0 exponent, and the fixed-point shift of the element grid, the scale being 2^(k - shift) (/ 0.75 for
    quartet); None for the other rules.

    Integer elements are read as fixed point j * 2^-shift (MXINT: emax_elem = 0), so that k, and its clamp
    to [-127, 127], is the spec's; the scale on the integer grid is 2^shift lower."""
    element = spec.element_format
    shift = element.emax if element.kind == "int" and spec.scale_rule != "rms" else 0
    if spec.scale_rule in ("floor", "quartet") and element.emax >= shift:
        # 2^(floor(log2 amax) - emax_elem): the exponent bits of amax times an exact power of two. With
        # emax_elem >= 0, k <= 127 for finite amax, and zero and FP32-subnormal amax (bits 0) have k < -127:
        # clamping the product to 2^-127 is the exponent clamp.
        binade = (amax.view(torch.int32) & 0x7F800000).view(torch.float32)
        return (binade * 2.0 ** (shift - element.emax)).clamp(min=2.0**E8M0_MIN_EXPONENT), shift
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
    return pow2(exponent.clamp(E8M0_MIN_EXPONENT, E8M0_MAX_EXPONENT)), shift


def compute_scale(amax: torch.Tensor, spec: FormatSpec) -> torch.Tensor:
    """The per-granule scale (FP32 tensor) from the granule's amax, by the spec's rule and scale format.

    For scale_rule=rms, `amax` is the clipping threshold clip_ratio x RMS instead of the maximum."""
    power = _power_of_two_scale(amax, spec)
    if power is not None:
        scale, shift = power
        scale = scale * 2.0**-shift if shift else scale
        return scale / 0.75 if spec.scale_rule == "quartet" else scale
    scale = _round_scale(amax / spec.element_format.max_value, spec)
    return torch.where(amax > 0, scale, torch.ones_like(scale))


@dataclass
class _Scales:
    """Per-granule scales of a symmetric format (granule layout, broadcastable against the granules)."""

    scale: torch.Tensor  # effective scale (block scale x tensor scale): value = element x scale
    block_scale: torch.Tensor  # the stored per-granule scale
    tensor_scale: torch.Tensor | None  # second-level decode scale (NVFP4), else None
    to_grid: torch.Tensor | None  # a multiplier onto the element grid, or None: divide by `scale`
    grid_factor: float = 1.0  # a further exact power of two applied after `to_grid`
    positive: bool = False  # every scale > 0 by construction (power-of-two rules): no zero-scale granules


def _granule_scales(g: torch.Tensor, spec: FormatSpec, amax: torch.Tensor | None = None) -> _Scales:
    """Each granule's scale by the spec's rule (from `amax` when the caller has it: the granules' finite
    amax, or clip ratio x RMS): the first of the two passes of quantization."""
    element = spec.element_format
    dims = None if spec.granularity == "tensor" else (-1,)
    if amax is None:
        amax = _finite_amax(g, dims) if spec.scale_rule != "rms" else spec.clip_ratio * _granule_rms(g, dims)
    if spec.tensor_scale:
        # Two-level scaling in the op order of torchao's NVFP4 reference (and the MSLK/TE kernels):
        # tensor scale = amax / (max_elem * max_scale), block scale = e4m3((amax_b / max_elem) / tensor scale),
        # values scaled by the reciprocal (1 / tensor scale) / block scale.
        scale_max = spec.scale_element.max_value
        tensor_amax = amax.amax() if spec.scale_rule == "absmax" else _finite_amax(g, None)
        tensor_scale = torch.where(
            tensor_amax > 0, tensor_amax / (element.max_value * scale_max), torch.ones_like(tensor_amax)
        )
        block_scale = _round_scale(((amax / element.max_value) / tensor_scale).clamp(max=scale_max), spec)
        scale = block_scale * tensor_scale
        to_grid = torch.where(scale > 0, (1.0 / tensor_scale) / block_scale, 0.0)
        return _Scales(scale, block_scale, tensor_scale, to_grid)
    power = _power_of_two_scale(amax, spec)
    if power is None or spec.scale_rule == "quartet":
        scale = compute_scale(amax, spec)
        return _Scales(scale, scale, None, None)
    # A power-of-two scale 2^(k - shift) multiplies by the exact reciprocal 2^-k, then by 2^shift: the same
    # correctly rounded quotient as the division, without a division.
    power_of_two, shift = power
    scale = power_of_two * 2.0**-shift if shift else power_of_two
    return _Scales(scale, scale, None, 1.0 / power_of_two, 2.0**shift, positive=True)


def _round_granules(g: torch.Tensor, scales: _Scales, spec: FormatSpec, noise: torch.Tensor | None) -> torch.Tensor:
    """The granules divided by their scales and rounded to the element grid (zero where the scale is 0):
    the second pass."""
    if scales.to_grid is None:
        scaled = g / torch.where(scales.scale > 0, scales.scale, torch.ones_like(scales.scale))
    else:
        scaled = g * scales.to_grid
    if scales.grid_factor != 1.0:
        scaled = scaled * scales.grid_factor
    stochastic = spec.rounding == "stochastic"
    elements = round_to_element(scaled, spec.element_format, saturate=spec.saturate, stochastic=stochastic, noise=noise)
    return elements if scales.positive else torch.where(scales.scale > 0, elements, torch.zeros_like(elements))


@dataclass
class _Quantized:
    elements: torch.Tensor  # grid values (float32), granule layout
    scale: torch.Tensor  # effective per-granule scale (block scale x tensor scale), broadcastable
    block_scale: torch.Tensor  # the stored per-granule scale
    tensor_scale: torch.Tensor | None  # second-level decode scale (NVFP4), else None
    zero_point: torch.Tensor | None


def _granules(x: torch.Tensor, spec: FormatSpec, axis: int) -> torch.Tensor:
    """x with the quantization axis last, split into blocks for block granularity."""
    moved = x.movedim(axis, -1)
    if spec.granularity != "block":
        return moved
    length = moved.shape[-1]
    if length % spec.block_size:
        raise ConfigError(
            f"format '{spec.name or spec.element}': block_size {spec.block_size} does not divide the "
            f"quantization axis ({axis}) of length {length} in shape {tuple(x.shape)}"
        )
    return moved.reshape(*moved.shape[:-1], length // spec.block_size, spec.block_size)


def _noise(x: torch.Tensor, spec: FormatSpec, axis: int, generator: torch.Generator | None) -> torch.Tensor | None:
    """The uniform [0, 1) draws of stochastic rounding, one per value in granule layout (None for RNE); drawn
    before the arithmetic so that compiled code, which cannot take a generator, rounds with the same draws."""
    if spec.rounding != "stochastic":
        return None
    return torch.rand(_granules(x, spec, axis).shape, generator=generator, device=x.device, dtype=torch.float32)


def _quantize(x: torch.Tensor, spec: FormatSpec, axis: int, noise: torch.Tensor | None) -> _Quantized:
    g = _granules(x.float(), spec, axis)
    if spec.asymmetric:
        dims = None if spec.granularity == "tensor" else (-1,)
        return _quantize_asymmetric(g, spec.element_format, dims, noise)
    scales = _granule_scales(g, spec)
    elements = _round_granules(g, scales, spec, noise)
    return _Quantized(elements, scales.scale, scales.block_scale, scales.tensor_scale, None)


def _quantize_asymmetric(g, element: ElementFormat, dims, noise: torch.Tensor | None) -> _Quantized:
    """Asymmetric integer grid: s = (max - min) / (2^b - 1), zero = round(-min / s), min <= 0 <= max."""
    finite = torch.where(torch.isfinite(g), g, 0.0)
    low = (finite.amin() if dims is None else finite.amin(dim=dims, keepdim=True)).clamp(max=0)
    high = (finite.amax() if dims is None else finite.amax(dim=dims, keepdim=True)).clamp(min=0)
    scale = (high - low) / element.max_value
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.round(-low / scale)
    codes = round_to_element(g / scale + zero_point, element, stochastic=noise is not None, noise=noise)
    return _Quantized(codes - zero_point, scale, scale, None, zero_point)


def _restore(values: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
    """Granule layout back to the shape and dtype of `like` (the inverse of _granules); no Python
    arithmetic on sizes, so it also compiles with dynamic shapes."""
    return values.reshape(like.movedim(axis, -1).shape).movedim(-1, axis).to(like.dtype)


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


def _fake_quant_eager(x: torch.Tensor, spec: FormatSpec, axis: int, noise: torch.Tensor | None) -> torch.Tensor:
    if spec.is_cast and spec.rounding == "nearest":
        return _cast(x, spec)
    q = _quantize(x, spec, axis, noise)
    return _restore(q.elements * q.scale, x, axis)


def _into(y: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return y if out is None else out.copy_(y)


def _fused(x, noise, out, spec: FormatSpec, axis: int) -> torch.Tensor:
    return _into(_fake_quant_eager(x, spec, axis, noise), out)


def _amax_pass(x: torch.Tensor, spec: FormatSpec, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each block's max |x| and their max, inf or NaN where a block holds one (then the caller filters)."""
    amax = _granules(x.float(), spec, axis).abs().amax(dim=-1, keepdim=True)
    return amax, amax.amax()


def _scales_pass(x, amax, spec: FormatSpec, axis: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    scales = _granule_scales(_granules(x.float(), spec, axis), spec, amax)
    return scales.scale, scales.to_grid


def _rounding_pass(x, scale, to_grid, noise, out, spec: FormatSpec, axis: int) -> torch.Tensor:
    elements = _round_granules(_granules(x.float(), spec, axis), _Scales(scale, scale, None, to_grid), spec, noise)
    return _into(_restore(elements * scale, x, axis), out)


# Kernels are specialised to each shape (dynamic=False): the compiled functions of all formats share one
# dynamo cache entry (the wrapper of functools.partial), whose shape changes would otherwise turn every
# kernel dynamic, and a dynamic kernel indexes blocks with integer divisions, unvectorised (~20x slower).
# Inductor writes a pointwise result to memory once it counts more than 30 operations; the per-granule
# scale arithmetic inlined into the rounding pass counts more, and that write and re-read cost a third of
# the bandwidth. Two-level (NVFP4) scales instead run as passes of their own, vectorized across blocks:
# the blocks' amax without the finite filter (which halves its speed; taken only when a block is not
# finite, the test the eager path makes too), their scales, then the rounding.
_COMPILE_OPTIONS = {"realize_opcount_threshold": 1000}
_Compiled = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]  # (x, noise, out)
_COMPILED: dict[tuple[str, int], _Compiled] = {}
_COMPILE_BROKEN: list[str] = []  # the first compilation error; compilation is not retried after it


def compile_failure() -> str | None:
    """The error that turned fake_quant's compiled path off in this process (it then runs eager), or None."""
    return _COMPILE_BROKEN[0] if _COMPILE_BROKEN else None


def _compiled(spec: FormatSpec, axis: int) -> _Compiled:
    key = (json.dumps(dataclasses.asdict(spec), sort_keys=True), axis)
    if key not in _COMPILED:
        # every format and axis is a guarded variant of one function: allow many (the default is 8)
        dynamo = torch._dynamo.config
        dynamo.recompile_limit = max(dynamo.recompile_limit, 512)
        dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 4096)
        compile_ = functools.partial(torch.compile, dynamic=False, options=_COMPILE_OPTIONS)
        if spec.tensor_scale and spec.granularity == "block" and not spec.asymmetric:
            block_amax = compile_(functools.partial(_amax_pass, spec=spec, axis=axis))
            scales = compile_(functools.partial(_scales_pass, spec=spec, axis=axis))
            rounding = compile_(functools.partial(_rounding_pass, spec=spec, axis=axis))

            def staged(x: torch.Tensor, noise: torch.Tensor | None, out: torch.Tensor | None) -> torch.Tensor:
                amax, tensor_amax = block_amax(x) if spec.scale_rule == "absmax" else (None, None)
                if tensor_amax is not None and not torch.isfinite(tensor_amax):
                    amax = None  # the scales pass takes the finite amax itself
                return rounding(x, *scales(x, amax), noise, out)

            _COMPILED[key] = staged
        else:
            _COMPILED[key] = compile_(functools.partial(_fused, spec=spec, axis=axis))
    return _COMPILED[key]


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
    eager. `out`, a
    tensor of x's shape and dtype, receives the result (compiled: written directly, no allocation).
    """
    spec = get_format(fmt)
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or out.device != x.device):
        raise ValueError(
            f"fake_quant: out must match x: got shape {tuple(out.shape)}, {out.dtype}, {out.device} for "
            f"x of shape {tuple(x.shape)}, {x.dtype}, {x.device}"
        )
    noise = _noise(x, spec, axis, generator)
    if compiled and not _COMPILE_BROKEN:
        try:
            return _compiled(spec, axis)(x, noise, out)
        except Exception as error:  # no C++ compiler, unsupported backend...: the eager path is always correct
            _COMPILE_BROKEN.append(f"{type(error).__name__}: {error}")
            log.warning("torch.compile of fake_quant failed, using the eager path: %s", _COMPILE_BROKEN[0])
    return _into(_fake_quant_eager(x, spec, axis, noise), out)


@dataclass
class QTensor:
    """A quantized tensor: integer codes (bit patterns for minifloats), scales and the format.

    codes and block_scale are in granule layout (quantization axis last, split into blocks).
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
        scale = self.block_scale if self.tensor_scale is None else self.block_scale * self.tensor_scale
        values = torch.where(scale > 0, elements * scale, torch.zeros_like(elements))
        return _restore(values, torch.empty(self.shape, dtype=dtype, device="meta"), self.axis)

    def bits_per_element(self) -> float:
        """Storage cost including scales (and zero points), for this tensor's quantization axis length."""
        return self.spec.bits_per_element(self.shape[self.axis])


def quantize(
    x: torch.Tensor, fmt: FormatSpec | str, *, axis: int = -1, generator: torch.Generator | None = None
) -> QTensor:
    """Quantize `x` into a QTensor holding integer codes and scales (see fake_quant for the arguments)."""
    spec = get_format(fmt)
    if spec.is_cast:
        raise ConfigError(f"quantize: '{spec.element}' is a plain cast with no codes; use fake_quant")
    q = _quantize(x, spec, axis, _noise(x, spec, axis, generator))
    codes = encode(q.elements if q.zero_point is None else q.elements + q.zero_point, spec.element_format)
    return QTensor(codes, q.block_scale, q.tensor_scale, q.zero_point, spec, axis, tuple(x.shape))
