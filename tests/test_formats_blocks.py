"""Scaled and block formats against independent oracles (gfloat, torchao) and by their invariants."""

from __future__ import annotations

import gfloat
import gfloat.formats as gf
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tradeoffs.formats import FormatSpec, fake_quant, get_format, quantize
from tradeoffs.numerics import quantization_error

GFLOAT_MX = {
    "mxfp8_e4m3": gf.format_info_mxfp8_e4m3,
    "mxfp8_e5m2": gf.format_info_mxfp8_e5m2,
    "mxfp6_e2m3": gf.format_info_mxfp6_e2m3,
    "mxfp6_e3m2": gf.format_info_mxfp6_e3m2,
    "mxfp4": gf.format_info_mxfp4_e2m1,
    "mxint8": gf.format_info_mxint8,
}


def crafted_blocks(rng: np.random.Generator) -> np.ndarray:
    """Blocks of 32 that probe the MX scale rule: powers of two, amax mantissas near 1.5 and 2, ties,
    tiny and huge magnitudes (exponent clamping), zeros; plus random heavy-tailed blocks."""
    blocks = [
        np.r_[7.0, 3.0001, 1.0, np.zeros(29)],
        np.r_[4.0, -2.0, 1.0, 0.5, np.zeros(28)],
        np.r_[1.5, 1.75, 0.25, -0.125, np.zeros(28)],
        np.r_[2.0 - 2**-20, 1.0, np.zeros(30)],
        np.full(32, 2.0**-130),
        np.full(32, 2.0**120) * rng.standard_normal(32),
        np.zeros(32),
        np.linspace(-6, 6, 32),
    ]
    random = rng.standard_t(3, (200, 32)) * 2.0 ** rng.integers(-20, 20, (200, 1))
    return np.vstack([np.stack(blocks), random]).astype(np.float32)


@pytest.mark.parametrize("name", sorted(GFLOAT_MX))
def test_mx_matches_gfloat_ocp_block_quantizer(name):
    blocks = crafted_blocks(np.random.default_rng(1))
    fi = GFLOAT_MX[name]
    expected = np.stack([gfloat.quantize_block(fi, b.astype(np.float64), gfloat.compute_scale_amax) for b in blocks])
    got = fake_quant(torch.from_numpy(blocks), name).double().numpy()
    np.testing.assert_array_equal(got, expected)


def test_mx_saturates_blocks_whose_amax_mantissa_exceeds_the_element_max():
    block = torch.tensor([[7.0, 3.0001, 1.0] + [0.0] * 29])
    assert fake_quant(block, "mxfp4")[0, :3].tolist() == [6.0, 3.0, 1.0]


TORCHAO_MX = {  # our format -> torchao's element dtype (torch dtypes; FP6 has torchao's own constants)
    "mxfp8_e4m3": "float8_e4m3fn",
    "mxfp8_e5m2": "float8_e5m2",
    "mxfp6_e2m3": "DTYPE_FP6_E2M3",
    "mxfp6_e3m2": "DTYPE_FP6_E3M2",
    "mxfp4": "float4_e2m1fn_x2",
}


@pytest.mark.parametrize("name", sorted(TORCHAO_MX))
def test_mx_matches_torchao_to_mx_floor_mode(name):
    from torchao.prototype.mx_formats import constants
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx

    element = getattr(torch, TORCHAO_MX[name], None) or getattr(constants, TORCHAO_MX[name])
    x = torch.randn(256, 4096, generator=torch.Generator().manual_seed(0)) * 3
    x[0, :64] *= 1000  # a few large blocks
    scale, data = to_mx(x, element, 32, ScaleCalculationMode.FLOOR)
    expected = to_dtype(data, scale, element, 32, torch.float32)
    torch.testing.assert_close(fake_quant(x, name), expected, rtol=0, atol=0)


@pytest.mark.parametrize("with_outliers", [False, True])
def test_nvfp4_matches_torchao_reference(with_outliers):
    from torchao.prototype.mx_formats.nvfp4_tensor import (
        f4_unpacked_to_f32,
        nvfp4_quantize,
        per_tensor_amax_to_scale,
        unpack_uint4,
    )

    x = torch.randn(512, 1024, generator=torch.Generator().manual_seed(2))
    if with_outliers:
        x[:, 7] *= 50
    per_tensor = per_tensor_amax_to_scale(x.abs().amax())
    scales, packed = nvfp4_quantize(x, 16, per_tensor)
    values = f4_unpacked_to_f32(unpack_uint4(packed)).reshape(512, 64, 16)
    q = quantize(x, "nvfp4")
    assert torch.equal(q.tensor_scale, per_tensor)
    assert torch.equal(q.block_scale.squeeze(-1), scales.float().reshape(512, 64))
    ours = q.dequantize().reshape(512, 64, 16)
    theirs = values * scales.float().reshape(512, 64, 1) * per_tensor
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)


def test_nvfp4_follows_the_paper_formula():
    """NVFP4 paper, Appendix B: s_enc = 6*448/amax, s_blk = e4m3(amax_blk/6 * s_enc), x_hat = q * s_blk / s_enc."""
    import ml_dtypes

    x = np.random.default_rng(3).standard_normal((64, 256)).astype(np.float32)
    s_enc = 6 * 448 / np.abs(x).max()
    amax_blocks = np.abs(x.reshape(64, 16, 16)).max(-1, keepdims=True)
    s_blk = np.minimum(amax_blocks / 6 * s_enc, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    scaled = np.clip(x.reshape(64, 16, 16) / (s_blk / s_enc), -6, 6)
    q = scaled.astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    expected = (q * s_blk / s_enc).reshape(64, 256)
    np.testing.assert_allclose(fake_quant(torch.from_numpy(x), "nvfp4").numpy(), expected, rtol=1e-6, atol=1e-7)


def test_special_values_in_blocks():
    x = torch.tensor([[float("nan"), 1.0, -2.0, float("inf")] + [0.5] * 28, [0.0] * 32])
    y = fake_quant(x, "mxfp8_e4m3")
    assert torch.isnan(y[0, 0]) and y[0, 1] == 1.0 and y[0, 2] == -2.0
    assert y[0, 3] == 448 * 2.0**-7  # +inf saturates to max x scale; amax of finite values is 2 -> scale 2^-7
    assert torch.equal(y[1], torch.zeros(32))


def test_bits_per_element_including_scales():
    expected = {
        "mxfp8_e4m3": 8.25,
        "mxfp6_e2m3": 6.25,
        "mxfp4": 4.25,
        "mxint8": 8.25,
        "nvfp4": 4.5,
        "nvint4": 4.5,
        "fp8_e4m3": 8,
        "bf16": 16,
    }
    for name, bits in expected.items():
        assert get_format(name).bits_per_element() == bits, name
    assert get_format("int8").bits_per_element(axis_length=4096) == 8 + 32 / 4096


PROPERTY_FORMATS = ["int8", "int4", "fp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp4", "mxint4", "nvfp4", "nvint4"]
finite_rows = arrays(np.float32, (2, 64), elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=False))


@settings(max_examples=60, deadline=None)
@given(x=finite_rows, name=st.sampled_from(PROPERTY_FORMATS))
def test_fake_quant_invariants(x, name):
    t = torch.from_numpy(x)
    y = fake_quant(t, name)
    assert y.shape == t.shape and y.dtype == t.dtype
    spec = get_format(name)
    if spec.scale_format == "e8m0":
        assert torch.equal(fake_quant(y, name), y), "idempotent"
    else:  # FP32 (tensor) scales: amax / max and its product with the element round by up to 1 ulp
        torch.testing.assert_close(fake_quant(y, name), y, rtol=1e-6, atol=0)
    assert torch.equal(fake_quant(-t, name), -y), "odd symmetric"
    assert bool((y[t == 0] == 0).all()), "zero preserved"
    group = spec.block_size if spec.granularity == "block" else 64
    for block_x, block_y in zip(t.reshape(-1, group), y.reshape(-1, group), strict=True):
        order = torch.argsort(block_x)
        assert bool((torch.diff(block_y[order]) >= 0).all()), "monotone within a scale group"


@settings(max_examples=40, deadline=None)
@given(x=finite_rows, k=st.integers(-20, 20), name=st.sampled_from(["mxfp8_e4m3", "mxfp6_e2m3", "mxfp4", "mxint8"]))
def test_mx_power_of_two_equivariance(x, k, name):
    """Scaling by 2^k commutes with MX quantization while no value leaves float32's normal range and no block
    scale reaches E8M0's floor of 2^-127 (there the scale clamps and small blocks flush to zero, by the spec)."""
    assume(np.all((x == 0) | (np.abs(x) * 2.0 ** min(k, 0) >= 2.0**-100)))
    t = torch.from_numpy(x)
    assert torch.equal(fake_quant(t * 2.0**k, name), fake_quant(t, name) * 2.0**k)


def test_stochastic_rounding_is_unbiased_and_seeded():
    spec = FormatSpec(
        element="fp4_e2m1",
        granularity="block",
        block_size=32,
        scale_format="e8m0",
        scale_rule="floor",
        rounding="stochastic",
    )
    x = torch.full((4096, 32), 1.3)  # between grid points 1 and 1.5 (the scale is 1)
    draws = fake_quant(x, spec, generator=torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) == {1.0, 1.5}
    assert abs(draws.mean().item() - 1.3) < 0.01
    again = fake_quant(x, spec, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


@pytest.mark.parametrize("bias", [15, 7])
def test_ue5m3_block_scales_are_ue5m3_values_with_the_configured_bias(bias):
    """UE5M3 (unsigned, 5 exponent and 3 mantissa bits, all codes finite): every stored block scale has at
    most 4 significant bits and an exponent within [1 - bias, 31 - bias] (subnormals below)."""
    from dataclasses import replace

    spec = replace(get_format("nvfp4_ue5m3"), scale_bias=bias)
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(3)) * torch.logspace(-4, 4, 256)
    scales = quantize(x, spec).block_scale.flatten().double()
    mantissa, exponent = torch.frexp(scales[scales > 0])
    assert torch.all((mantissa * 16) == torch.round(mantissa * 16))  # 1 implicit + 3 stored bits
    assert exponent.max().item() - 1 <= 31 - bias
    assert exponent.min().item() - 1 >= 1 - bias - 3  # the smallest subnormal: 2^(1 - bias - 3)
    assert scales.max().item() == 1.875 * 2.0 ** (31 - bias)  # the largest block maps to the largest scale
    error = quantization_error(x, fake_quant(x, spec))
    assert error.qsnr_db > 18  # a usable NVFP4 variant on this data


def test_power_of_two_scales_of_elements_below_one_keep_the_exponent_clamp():
    # a large custom bias puts the element's max below 1 (emax_elem < 0): the scale exponent still clamps
    # to [-127, 127] and a subnormal amax still gets its exact exponent
    below_one = FormatSpec(
        element="fp4_e2m1", bias=4, granularity="block", block_size=2, scale_format="e8m0", scale_rule="floor"
    )
    huge = fake_quant(torch.tensor([[1.5 * 2.0**127, 1.0]]), below_one)
    assert torch.isfinite(huge).all() and huge[0, 0] == below_one.element_format.max_value * 2.0**127
    tiny_format = FormatSpec(
        element="fp4_e2m1", bias=8, granularity="block", block_size=2, scale_format="e8m0", scale_rule="floor"
    )
    tiny = torch.tensor([[2.0**-130, 0.0]])
    assert torch.equal(fake_quant(tiny, tiny_format), tiny)


def test_rms_scale_of_an_overflowing_block_saturates_to_the_largest_e8m0():
    spec = FormatSpec(
        element="fp4_e2m1", granularity="block", block_size=2, scale_format="e8m0", scale_rule="rms", clip_ratio=1.0
    )
    q = quantize(torch.tensor([[3e38, 3e38]]), spec)
    assert q.block_scale.item() == 2.0**127
