"""The fast paths of emulated training give the eager bits: quantizing a pass's operands in one compiled
graph (stochastic rounding draws included) and the shared Hadamard matrices of the wgrad rotation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tradeoffs.formats import get_format, hadamard_matrix, hadamard_rotate
from tradeoffs.formats.compiled import fake_quant_group
from tradeoffs.train import LinearQuantizer, QuantLinear


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical but for NaN payloads and signs, which carry no meaning."""
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a[~nan].view(torch.int32), b[~nan].view(torch.int32))


@pytest.mark.slow  # compiles: tens of seconds on a cold cache
def test_a_compiled_group_equals_fake_quant_of_each_in_turn():
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 3, 64)
    x[3, 5], x[7, 1], x[9, 2] = float("inf"), float("nan"), -0.0
    items = [(x, get_format("nvfp4_sr"), -1), (x, get_format("fp32"), 0), (x, get_format("nvfp4"), 0)]
    compiled = fake_quant_group(items, torch.Generator().manual_seed(7), compiled=True)
    eager = fake_quant_group(items, torch.Generator().manual_seed(7), compiled=False)
    assert compiled[1] is x
    for fast, slow in zip(compiled, eager, strict=True):
        assert _same_bits(fast, slow)
    other = fake_quant_group(items, torch.Generator().manual_seed(8), compiled=False)
    assert not torch.equal(eager[0], other[0]) and torch.equal(eager[2], other[2])


@pytest.mark.slow  # compiles two graphs: a minute on a cold cache
def test_compiled_nvfp4_linear_trains_with_the_eager_bits():
    """Forward, input and weight gradients of an NVFP4 QuantLinear (random Hadamard on the wgrad inputs,
    stochastic rounding on gradients) are bit-identical compiled and eager, and leave the generator at the
    same state."""
    torch.manual_seed(0)
    plain = nn.Linear(64, 48, bias=False)
    x = torch.randn(32, 64)
    grad_out = torch.randn(32, 48)
    specs = get_format("nvfp4"), get_format("nvfp4"), get_format("nvfp4_sr")
    runs = []
    for compiled in (False, True):
        generator = torch.Generator().manual_seed(5)
        module = nn.Linear(64, 48, bias=False)
        module.load_state_dict(plain.state_dict())
        module.__class__ = QuantLinear
        module.quantizer = LinearQuantizer(
            *specs, wgrad_hadamard_size=16, generator=generator, compiled=compiled, step=3
        )
        inputs = x.clone().requires_grad_()
        y = module(inputs)
        y.backward(grad_out)
        runs.append((y.detach(), inputs.grad, module.weight.grad, generator.get_state()))
    for eager, fast in zip(*runs, strict=True):
        assert torch.equal(eager, fast)


@pytest.mark.parametrize("size, shape, axis", [(16, (2048, 64), 0), (16, (256, 192), -1), (32, (4, 64, 96), 1)])
def test_rotation_in_one_product_gives_the_bits_of_a_product_per_block(size, shape, axis):
    """hadamard_rotate multiplies all blocks in one contiguous product; the reference is the batched
    product of the strided blocks (what it ran before), on values from subnormal to huge, signed-zero
    blocks, with and without random signs, forward and inverse."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator) * torch.logspace(-44, 30, shape[-1])
    x.narrow(axis, 0, size).zero_()
    x.narrow(axis, size, size).fill_(-0.0)
    for seed in (None, 3):
        for inverse in (False, True):
            matrix = hadamard_matrix(size, signs_seed=seed)
            matrix = matrix.T if inverse else matrix
            moved = x.movedim(axis, -1)
            blocks = moved.reshape(*moved.shape[:-1], moved.shape[-1] // size, size)
            expected = (blocks @ matrix).reshape(moved.shape).movedim(-1, axis)
            rotated = hadamard_rotate(x, size, axis=axis, signs_seed=seed, inverse=inverse)
            assert _same_bits(rotated, expected), (seed, inverse)
    before = hadamard_rotate(x, size, axis=axis, signs_seed=3)
    hadamard_matrix(size, signs_seed=3).mul_(0)  # a caller's matrix is its own: the shared one is unchanged
    assert _same_bits(hadamard_rotate(x, size, axis=axis, signs_seed=3), before)
