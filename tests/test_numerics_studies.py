"""The numerics studies: the INT-vs-FP QSNR model, crest-factor bins, RMS clipping, L-Mul."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from tradeoffs.formats import fake_quant, get_format, hadamard_rotate
from tradeoffs.numerics import crest_binned_error, qsnr_db, quantization_error, sample
from tradeoffs.numerics.distributions import DistributionConfig
from tradeoffs.numerics.lmul import float_multiply, lmul, lmul_offset_bits, random_operands, relative_errors
from tradeoffs.numerics.theory import crossover_crest, model_qsnr_db, theory_format

# The INT-vs-FP paper's crossovers (claims.md): our implementation of its model must reproduce them.
PAPER_CROSSOVERS = [
    ("mxint8", "mxfp8_e4m3", 7.55),
    ("mxint6", "mxfp6_e2m3", 1.96),
    ("mxint4", "mxfp4", 2.04),
    ("nvint4", "nvfp4", 2.39),
]


@pytest.mark.parametrize(("int_name", "fp_name", "paper"), PAPER_CROSSOVERS)
def test_model_reproduces_the_papers_crossovers(int_name, fp_name, paper):
    int_fmt, fp_fmt = theory_format(get_format(int_name)), theory_format(get_format(fp_name))
    crossing = crossover_crest(int_fmt, fp_fmt)
    assert crossing == pytest.approx(paper, abs=0.01)
    below, above = crossing * 0.9, crossing * 1.1
    assert model_qsnr_db(int_fmt, below) > model_qsnr_db(fp_fmt, below)
    assert model_qsnr_db(int_fmt, above) < model_qsnr_db(fp_fmt, above)


def test_int_model_is_the_uniform_noise_formula():
    fmt = theory_format(get_format("int8_tensor"))  # FP32 absmax scale: rho = 1, no block correction
    kappa = np.array([2.0, 4.0, 8.0])
    expected = 10 * np.log10(12) + 20 * 7 * math.log10(2) - 20 * np.log10(kappa)
    np.testing.assert_allclose(model_qsnr_db(fmt, kappa), expected, rtol=1e-12)
    assert model_qsnr_db(fmt, 2.0) - model_qsnr_db(fmt, 4.0) == pytest.approx(20 * math.log10(2))


def test_fp_model_is_flat_where_subnormals_do_not_matter():
    fmt = theory_format(get_format("mxfp8_e4m3"))  # alpha_M = 1 / (24 * 4^3): 31.86 dB for small kappa
    assert model_qsnr_db(fmt, 2.0) == pytest.approx(10 * math.log10(24 * 64), abs=0.01)


def test_monte_carlo_follows_the_model_for_mx_int8():
    """Binned QSNR of MX INT formats on Gaussian rows of varied magnitude follows the model within 0.6 dB
    and with its slope in kappa (the model's rho = 1.5 averages where block maxima fall within a binade,
    so rows are scaled by 2^U(0, 1) as real tensors are; unit-variance rows would bias the bins)."""
    x = sample(DistributionConfig(row_scale_octaves=1.0), 1024, 1024, seed=0)
    for name in ("mxint8", "mxint4"):
        spec = get_format(name)
        bins = [b for b in crest_binned_error(x, fake_quant(x, spec), 32) if b.blocks >= 400]
        assert len(bins) >= 4
        measured = np.array([10 * math.log10(b.signal / b.noise) for b in bins])
        model = model_qsnr_db(theory_format(spec), np.array([b.crest_low + 0.125 for b in bins]))
        np.testing.assert_allclose(measured, model, atol=0.6)
        assert np.polyfit(model, measured, 1)[0] == pytest.approx(1.0, abs=0.2)


def test_one_qsnr_for_sums_powers_and_arrays():
    signal, noise = np.array([4.0, 2.5, 1e-30, 7.0]), np.array([0.04, 2.5, 1e-33, 0.0])
    db = qsnr_db(signal, noise)
    assert [qsnr_db(s, n) for s, n in zip(signal, noise, strict=True)] == list(db)
    np.testing.assert_array_equal(db[:3], -10 * np.log10(noise[:3] / signal[:3]))
    assert db[1] == 0.0 and db[3] == math.inf and isinstance(qsnr_db(1.0, 0.5), float)
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    error = quantization_error(x, fake_quant(x, "mxfp4"))
    assert error.qsnr_db == qsnr_db(1.0, error.relative_mse)  # the relative MSE in dB, bit for bit
    assert error.qsnr_db == pytest.approx(-10 * math.log10(error.relative_mse), abs=1e-12) and error.qsnr_db > 10


def test_crest_bins_partition_the_error():
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    q = fake_quant(x, "mxfp4")
    bins = crest_binned_error(x, q, 32)
    assert sum(b.blocks for b in bins) == x.numel() // 32
    assert sum(b.signal for b in bins) == pytest.approx(x.double().square().sum().item())
    assert sum(b.noise for b in bins) == pytest.approx((q - x).double().square().sum().item())
    assert all(1.0 <= b.crest_low <= math.sqrt(32) for b in bins)


@pytest.mark.parametrize("name", ["mxfp4_rms", "nvfp4_rms"])
def test_configured_clip_ratio_minimises_mse_on_rotated_gaussian_data(name):
    x = hadamard_rotate(torch.randn(128, 4096, generator=torch.Generator().manual_seed(2)), 32)
    spec = get_format(name)

    def mse(ratio: float) -> float:
        return (fake_quant(x, dataclasses.replace(spec, clip_ratio=ratio)) - x).square().mean().item()

    grid = [1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 4.0]
    assert mse(spec.clip_ratio) <= 1.01 * min(mse(r) for r in grid)


def test_quantizer_ranking_matches_quartet_on_gaussian_data():
    """RMS clipping after Hadamard < absmax RTN < stochastic rounding in MSE; SR is unbiased (Quartet)."""
    x = hadamard_rotate(torch.randn(256, 4096, generator=torch.Generator().manual_seed(3)), 32)
    generator = torch.Generator().manual_seed(4)
    errors = {
        name: quantization_error(x, fake_quant(x, name, generator=generator))
        for name in ("mxfp4_rms", "mxfp4", "mxfp4_sr")
    }
    assert errors["mxfp4_rms"].relative_mse < errors["mxfp4"].relative_mse < errors["mxfp4_sr"].relative_mse
    assert abs(errors["mxfp4_sr"].bias) < 2e-3 < abs(errors["mxfp4"].bias)


def test_rms_rule_scales_are_powers_of_two_for_e8m0():
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(5))
    from tradeoffs.formats import quantize

    scales = quantize(x, "mxfp4_rms").block_scale
    np.testing.assert_array_equal(torch.frexp(scales).mantissa.numpy(), 0.5)


def test_lmul_matches_the_papers_formula_on_exact_operands():
    x = torch.tensor([1.5, -1.25, 3.0, 0.0, 1.75])
    y = torch.tensor([1.5, 2.5, -0.75, 2.0, 1.75])
    for m in (2, 3, 4, 5):
        offset = 2.0 ** -lmul_offset_bits(m)
        expected = [
            (1 + 0.5 + 0.5 + offset),
            -(1 + 0.25 + 0.25 + offset) * 2,
            -(1 + 0.5 + 0.5 + offset),  # 3 = 1.5 * 2^1, 0.75 = 1.5 * 2^-1
            0.0,
            (1 + 0.75 + 0.75 + offset),
        ]
        torch.testing.assert_close(lmul(x, y, m), torch.tensor(expected), rtol=0, atol=0)
    assert [lmul_offset_bits(m) for m in (2, 3, 4, 5, 6)] == [2, 3, 3, 4, 4]


def test_float_multiply_rounds_operands_and_product():
    x, y = torch.tensor([1.0625, 20.0]), torch.tensor([1.0, 30.0])  # 1.0625 -> 1.0 in E4M3; 600 -> 448 max
    torch.testing.assert_close(float_multiply(x, y, "fp8_e4m3"), torch.tensor([1.0, 448.0]))


def test_lmul_error_shrinks_with_more_mantissa_bits_and_fp8_orders():
    x, y = random_operands(1 << 16, "loguniform", 0)
    mean = {m: relative_errors(lmul(x, y, m), x, y).mean().item() for m in (2, 3, 4, 5)}
    assert mean[2] > mean[3] > mean[4] > mean[5] > 0
    e4m3 = relative_errors(float_multiply(x, y, "fp8_e4m3"), x, y).mean().item()
    e5m2 = relative_errors(float_multiply(x, y, "fp8_e5m2"), x, y).mean().item()
    assert 0 < e4m3 < e5m2
