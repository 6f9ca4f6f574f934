"""Rounding of float32 values onto an element grid (integer or minifloat), with explicit saturation.

Pure tensor functions. Round-to-nearest-even of integers uses torch.round (half to even); of minifloats,
one FP32 addition of a power of two whose FP32 ulp is the element's ulp at that value (the hardware's own
round-to-nearest-even, in bit operations and adds that torch.compile vectorizes). Stochastic rounding adds
a uniform [0, 1) draw before flooring, which is unbiased. Overflow is decided here, never by a dtype cast.
"""

from __future__ import annotations

import torch

from tradeoffs.formats.spec import ElementFormat


def pow2(exponent: torch.Tensor) -> torch.Tensor:
    """Exact float32 2^k for integer k in [-149, 127], built from bits (exp2 is not guaranteed exact)."""
    k = exponent.to(torch.int32)
    normal = ((k.clamp(-126, 127) + 127) << 23).view(torch.float32)
    subnormal = (torch.ones_like(k) << (k + 149).clamp(0, 22)).view(torch.float32)
    return torch.where(k >= -126, normal, subnormal)


_SMALLEST_NORMAL = 2.0**-126


def _exponent_field(x: torch.Tensor) -> torch.Tensor:
    """The unbiased exponent field of float32 x (int32): floor(log2 |x|) for normal x, -127 for zero and
    FP32 subnormals, 128 for inf and NaN."""
    return ((x.view(torch.int32) >> 23) & 0xFF) - 127


def floor_log2(x: torch.Tensor) -> torch.Tensor:
    """floor(log2 |x|) exactly (int32) for finite non-zero float32 x, read from the exponent bits
    (FP32 subnormals are scaled by 2^64 first); 0 gives -191, inf and NaN 128."""
    magnitude = x.abs()
    subnormal = magnitude < _SMALLEST_NORMAL
    normalised = torch.where(subnormal, magnitude * 2.0**64, magnitude)
    return _exponent_field(normalised) - torch.where(subnormal, 64, 0).to(torch.int32)


# Minifloats torch can cast to with round-to-nearest-even (exact, subnormals included): in eager mode a
# clamp then two casts replace the generic arithmetic below, a fast path checked against it by the ml_dtypes
# tests. Compiled code keeps the arithmetic, which vectorizes where the casts do not.
_NATIVE_CASTS = {(4, 3, 7, "fn"): torch.float8_e4m3fn, (5, 2, 15, "ieee"): torch.float8_e5m2}


def _magic_rounding_exact(element: ElementFormat) -> bool:
    """Whether every 2^(e - m + 23), e in [min_exponent, emax], is a normal FP32 number and |x| + it
    stays in its binade (m <= 22): true for every format but the widest-exponent ones (E8Mm)."""
    low, high = element.min_exponent - element.man_bits + 150, element.emax - element.man_bits + 150
    return element.man_bits <= 22 and element.min_exponent >= -126 and low >= 1 and high <= 254


def uniform_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) noise for stochastic rounding, reproducible through the generator."""
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)


def _draws(x: torch.Tensor, generator: torch.Generator | None, noise: torch.Tensor | None) -> torch.Tensor:
    return uniform_like(x, generator) if noise is None else noise


def round_to_element(
    x: torch.Tensor,
    element: ElementFormat,
    *,
    saturate: bool = True,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Round float32 `x` (already divided by its scale) to the nearest value of `element`'s grid, or
    stochastically with uniform [0, 1) draws: `noise` (x's shape) if given, else drawn from `generator`.

    Integer grids are symmetric [-(2^(b-1)-1), 2^(b-1)-1] (asymmetric: [0, 2^b-1]) and always saturate.
    Minifloats: values past max_value saturate to +-max (also +-inf) when `saturate`, else become inf
    (formats with inf) or NaN. NaN stays NaN. The sign of zero is kept.
    """
    if element.kind == "int":
        r = torch.floor(x + _draws(x, generator, noise)) if stochastic else torch.round(x)
        low = 0.0 if element.asymmetric else -element.max_value
        return r.clamp(low, element.max_value)
    native = _NATIVE_CASTS.get((element.exp_bits, element.man_bits, element.bias, element.special))
    if native is not None and saturate and not stochastic and not torch.compiler.is_compiling():
        return x.clamp(-element.max_value, element.max_value).to(native).to(torch.float32)
    magnitude = x.abs()
    if stochastic or not _magic_rounding_exact(element):
        exponent = floor_log2(magnitude).clamp(element.min_exponent, element.emax)
        step = pow2(exponent - element.man_bits)
        scaled = magnitude / step
        rounded = torch.floor(scaled + _draws(x, generator, noise)) if stochastic else torch.round(scaled)
        q = rounded * step
    else:
        # The exponent of the element binade holding |x|: the subnormal range (FP32's own included, as
        # min_exponent >= -126) shares the smallest normal's, values past the top binade use the top's.
        exponent = _exponent_field(magnitude).clamp(element.min_exponent, element.emax)
        # 2^(exponent - m + 23) has an FP32 ulp of 2^(exponent - m), the element's step: adding it rounds
        # |x| to that step (to nearest, ties to even) and subtracting it again is exact.
        magic = ((exponent + (127 + 23 - element.man_bits)) << 23).view(torch.float32)
        q = (magnitude + magic) - magic
    max_value = element.max_value
    if saturate:
        q = q.clamp(max=max_value)
    else:
        overflow = torch.tensor(float("inf") if element.has_inf else float("nan"), dtype=q.dtype)
        q = torch.where(q > max_value, overflow, q)
    return torch.copysign(q, x)
