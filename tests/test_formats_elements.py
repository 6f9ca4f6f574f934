"""Element formats against ml_dtypes over every code point, every tie and the subnormals."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

from tradeoffs.formats import FormatSpec, fake_quant, get_format, parse_element, quantize
from tradeoffs.formats.codes import decode, encode
from tradeoffs.formats.element import round_to_element

ORACLES = {
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
    "fp6_e2m3": ml_dtypes.float6_e2m3fn,
    "fp6_e3m2": ml_dtypes.float6_e3m2fn,
    "fp4_e2m1": ml_dtypes.float4_e2m1fn,
    "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16,
}


def code_points(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All bit patterns of a format and their float32 values, from ml_dtypes."""
    dtype = ORACLES[name]
    bits = parse_element(name).bits
    codes = np.arange(2**bits, dtype=np.uint16 if bits > 8 else np.uint8)
    return codes, codes.view(dtype).astype(np.float32)


def probe_values(name: str) -> np.ndarray:
    """Every finite code point, every midpoint (tie), values just either side of each midpoint, and
    random values across the range, positive and negative."""
    _, values = code_points(name)
    finite = np.unique(values[np.isfinite(values)])
    mids = (finite[:-1].astype(np.float64) + finite[1:]) / 2
    below = np.nextafter(mids.astype(np.float32), np.float32(-np.inf))
    above = np.nextafter(mids.astype(np.float32), np.float32(np.inf))
    rng = np.random.default_rng(0)
    spread = rng.uniform(-1, 1, 20_000) * finite.max() * rng.choice([1, 1e-2, 1e-4], 20_000)
    return np.concatenate([finite, mids.astype(np.float32), below, above, spread.astype(np.float32)])


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality of float32 tensors (the sign of zero counts), with every NaN equal."""
    a_bits, b_bits = a.view(torch.int32), b.view(torch.int32)
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool(((a_bits == b_bits) | both_nan).all())


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_round_to_nearest_even_matches_ml_dtypes(name):
    element = parse_element(name)
    x = probe_values(name)
    x = x[np.abs(x) <= element.max_value]
    expected = torch.from_numpy(x.astype(ORACLES[name]).astype(np.float32))
    got = round_to_element(torch.from_numpy(x), element, saturate=True)
    assert same_values(got, expected), name
    assert same_values(fake_quant(torch.from_numpy(x), get_format(name)), expected)


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "bf16", "fp16"])
def test_overflow_without_saturation_matches_ml_dtypes(name):
    element = parse_element(name)
    top = element.max_value
    x = np.array([top * 1.01, top * 1.2, top * 4, np.inf, -np.inf, np.nan, -top * 1.01, 3e38], np.float32)
    x = x.astype(np.float32)
    expected = torch.from_numpy(x.astype(ORACLES[name]).astype(np.float32))
    got = round_to_element(torch.from_numpy(x), element, saturate=False)
    assert same_values(got, expected), (got, expected)


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_saturation_is_explicit(name):
    element = parse_element(name)
    top = element.max_value
    x = torch.tensor([top * 1.5, -top * 3, float("inf"), float("-inf"), float("nan")])
    got = round_to_element(x, element, saturate=True)
    assert got[:4].tolist() == [top, -top, top, -top]
    assert torch.isnan(got[4])


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "fp6_e2m3", "fp6_e3m2", "fp4_e2m1"])
def test_codes_are_the_ml_dtypes_bit_patterns(name):
    element = parse_element(name)
    codes, values = code_points(name)
    mine = encode(torch.from_numpy(values), element)
    finite = np.isfinite(values)
    assert np.array_equal(mine.numpy()[finite], codes[finite].astype(np.int32))
    decoded = decode(torch.from_numpy(codes.astype(np.int32)), element)
    assert same_values(decoded, torch.from_numpy(values))


def test_known_values_and_pitfalls():
    e4m3, e5m2 = parse_element("fp8_e4m3"), parse_element("fp8_e5m2")
    assert (e4m3.max_value, e5m2.max_value) == (448.0, 57344.0)
    assert parse_element("fp4_e2m1").max_value == 6 and parse_element("fp6_e2m3").max_value == 7.5
    assert parse_element("fp6_e3m2").max_value == 28
    # RNE, not ties-away (microxcaling's default gives 416).
    assert round_to_element(torch.tensor([400.0]), e4m3).item() == 384
    # No double rounding through bf16: 479 -> E5M2 is 448.
    assert round_to_element(torch.tensor([479.0]), e5m2).item() == 448
    grid = round_to_element(torch.linspace(0, 6, 601), parse_element("fp4_e2m1")).unique().tolist()
    assert grid == [0, 0.5, 1, 1.5, 2, 3, 4, 6]


@pytest.mark.parametrize("bits", range(2, 9))
def test_symmetric_integer_grid_never_uses_the_most_negative_code(bits):
    x = torch.linspace(-3, 3, 10_001)
    spec = FormatSpec(element=f"int{bits}")
    q = quantize(x, spec)
    limit = 2 ** (bits - 1) - 1
    assert q.codes.min().item() == -limit and q.codes.max().item() == limit
    assert torch.equal(q.dequantize(), fake_quant(x, spec))


def test_asymmetric_integer_grid_uses_all_levels_and_keeps_zero_exact():
    x = torch.linspace(-1, 3, 4096)
    q = quantize(x, "int4_asym")
    assert q.codes.min().item() == 0 and q.codes.max().item() == 15
    assert fake_quant(torch.tensor([0.0, -1.0, 3.0] + [1.0] * 29), "int4_asym")[0].item() == 0.0
