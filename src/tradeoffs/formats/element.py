"""Rounding of float32 values onto an element grid (integer or minifloat), with explicit saturation.

Pure tensor functions. Round-to-nearest-even uses torch.round (half to even); stochastic rounding adds
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


def floor_log2(x: torch.Tensor) -> torch.Tensor:
    """floor(log2 |x|) exactly (int32) for finite non-zero x, via frexp; 0 gives -1."""
    return torch.frexp(x)[1] - 1


# Minifloats torch can cast to with round-to-nearest-even (exact, subnormals included): a clamp then two
# casts replace the generic arithmetic below, a fast path checked against it by the ml_dtypes tests.
_NATIVE_CASTS = {(4, 3, 7, "fn"): torch.float8_e4m3fn, (5, 2, 15, "ieee"): torch.float8_e5m2}


def uniform_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) noise for stochastic rounding, reproducible through the generator."""
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)


def round_to_element(
    x: torch.Tensor,
    element: ElementFormat,
    *,
    saturate: bool = True,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round float32 `x` (already divided by its scale) to the nearest value of `element`'s grid.

    Integer grids are symmetric [-(2^(b-1)-1), 2^(b-1)-1] (asymmetric: [0, 2^b-1]) and always saturate.
    Minifloats: values past max_value saturate to +-max (also +-inf) when `saturate`, else become inf
    (formats with inf) or NaN. NaN stays NaN. The sign of zero is kept.
    """
    if element.kind == "int":
        r = torch.floor(x + uniform_like(x, generator)) if stochastic else torch.round(x)
        low = 0.0 if element.asymmetric else -element.max_value
        return r.clamp(low, element.max_value)
    native = _NATIVE_CASTS.get((element.exp_bits, element.man_bits, element.bias, element.special))
    if native is not None and saturate and not stochastic:
        return x.clamp(-element.max_value, element.max_value).to(native).to(torch.float32)
    magnitude = x.abs()
    exponent = floor_log2(magnitude).clamp(min=element.min_exponent)
    step = pow2(exponent - element.man_bits)
    scaled = magnitude / step
    rounded = torch.floor(scaled + uniform_like(x, generator)) if stochastic else torch.round(scaled)
    q = rounded * step
    max_value = element.max_value
    if saturate:
        q = q.clamp(max=max_value)
    else:
        overflow = torch.tensor(float("inf") if element.has_inf else float("nan"), dtype=q.dtype)
        q = torch.where(q > max_value, overflow, q)
    return torch.copysign(q, x)
