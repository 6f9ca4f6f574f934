"""The compiled fast path of fake_quant (torch.compile) is bit-identical to the eager arithmetic."""

from __future__ import annotations

import pytest
import torch

from tradeoffs.formats import FormatSpec, fake_quant


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "nvfp4"])
def test_compiled_fake_quant_equals_eager_across_shapes_and_axes(name):
    generator = torch.Generator().manual_seed(0)
    for shape, axis in [((128, 96), -1), ((64, 128), 0)]:
        x = torch.randn(shape, generator=generator) * torch.logspace(-3, 3, shape[1])
        x[3, 5], x[7, 1], x[9, 2] = float("inf"), float("nan"), -0.0
        compiled, eager = fake_quant(x, name, axis=axis, compiled=True), fake_quant(x, name, axis=axis)
        assert torch.equal(compiled.isnan(), eager.isnan())
        assert torch.equal(compiled.nan_to_num(), eager.nan_to_num()), (name, shape, axis)
        signed = ~eager.isnan()  # the sign of a NaN carries no meaning
        assert torch.equal(compiled.signbit()[signed], eager.signbit()[signed])


@pytest.mark.parametrize("name", ["int8", "fp8_e4m3", "mxint8", "nvfp4", "nvfp4_rms"])
def test_compiled_fake_quant_into_a_preallocated_output_equals_eager(name):
    # finite input: NVFP4's staged path takes its block amax without the finite filter here
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(1)) * torch.logspace(-2, 2, 128)
    out = torch.full_like(x, float("nan"))
    result = fake_quant(x, name, compiled=True, out=out)
    assert result.data_ptr() == out.data_ptr()
    assert torch.equal(out, fake_quant(x, name))


def test_fake_quant_out_must_match_the_input():
    x = torch.randn(8, 32)
    eager_out = torch.empty_like(x)
    assert torch.equal(fake_quant(x, "mxfp4", out=eager_out), fake_quant(x, "mxfp4"))
    with pytest.raises(ValueError, match=r"out must match x: got shape \(8, 16\)"):
        fake_quant(x, "mxfp4", out=torch.empty(8, 16))
    with pytest.raises(ValueError, match=r"torch\.float64"):
        fake_quant(x, "mxfp4", out=torch.empty(8, 32, dtype=torch.float64))


@pytest.mark.parametrize("name", ["mxfp4_sr", "nvfp4_sr"])
def test_compiled_stochastic_rounding_draws_what_eager_draws(name):
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(2))
    compiled = fake_quant(x, name, generator=torch.Generator().manual_seed(7), compiled=True)
    eager = fake_quant(x, name, generator=torch.Generator().manual_seed(7))
    assert torch.equal(compiled, eager)
    assert not torch.equal(eager, fake_quant(x, name, generator=torch.Generator().manual_seed(8)))


def test_two_level_scale_of_a_whole_tensor_compiles_like_eager():
    spec = FormatSpec(element="fp4_e2m1", granularity="tensor", scale_format="e4m3", tensor_scale=True)
    x = torch.tensor([[1.0, 2.0], [30.0, 60.0]])
    assert torch.equal(fake_quant(x, spec, compiled=True), fake_quant(x, spec))
