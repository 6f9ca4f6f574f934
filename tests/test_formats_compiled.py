"""The compiled fast path of fake_quant (torch.compile) is bit-identical to the eager arithmetic."""

from __future__ import annotations

import pytest
import torch

from tradeoffs.formats import fake_quant


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "nvfp4"])
def test_compiled_fake_quant_equals_eager_across_shapes_and_axes(name):
    generator = torch.Generator().manual_seed(0)
    for shape, axis in [((256, 64), -1), ((128, 96), -1), ((64, 128), 0)]:
        x = torch.randn(shape, generator=generator) * torch.logspace(-3, 3, shape[1])
        x[3, 5], x[7, 1], x[9, 2] = float("inf"), float("nan"), -0.0
        compiled, eager = fake_quant(x, name, axis=axis, compiled=True), fake_quant(x, name, axis=axis)
        assert torch.equal(compiled.isnan(), eager.isnan())
        assert torch.equal(compiled.nan_to_num(), eager.nan_to_num()), (name, shape, axis)
        signed = ~eager.isnan()  # the sign of a NaN carries no meaning
        assert torch.equal(compiled.signbit()[signed], eager.signbit()[signed])
