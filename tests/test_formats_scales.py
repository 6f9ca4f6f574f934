"""Scale, then round: compute_scales and round_with_scales against fake_quant, oracles and slices (GPTQ's use)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tradeoffs.errors import ConfigError
from tradeoffs.formats import (
    FormatSpec,
    ScaleRule,
    compute_scales,
    fake_quant,
    format_names,
    get_format,
    is_power_of_two,
    quantize_with_scales,
    round_with_scales,
)
from tradeoffs.numerics import qsnr_db


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (the sign of zero counts), every NaN equal to every NaN."""
    a, b = a.float(), b.float()
    return a.shape == b.shape and bool(((a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())).all())


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def weights(rows: int = 8, columns: int = 256, seed: int = 0) -> torch.Tensor:
    """A weight-like matrix with columns of very different magnitudes, a zero group and special values."""
    x = torch.randn(rows, columns, generator=seeded(seed)) * torch.logspace(-4, 4, columns)
    x[1, :32] = 0.0
    x[2, 3], x[3, 40], x[4, 77], x[5, 5] = float("inf"), float("nan"), float("-inf"), -0.0
    return x


@pytest.mark.parametrize("name", format_names())
def test_rounding_with_the_computed_scales_is_fake_quant_for_every_named_format(name):
    x = weights()
    for axis in (-1, 0) if get_format(name).granularity != "block" else (-1,):
        scales = compute_scales(x, name, axis=axis)
        assert same_bits(
            round_with_scales(x, scales, generator=seeded(3)), fake_quant(x, name, axis=axis, generator=seeded(3))
        )
    bf16 = x.to(torch.bfloat16)
    rounded = round_with_scales(bf16, compute_scales(bf16, name), generator=seeded(3))
    assert rounded.dtype == torch.bfloat16 and same_bits(rounded, fake_quant(bf16, name, generator=seeded(3)))


GPTQ_FORMATS = {
    "nvfp4": get_format("nvfp4"),  # two levels: a tensor scale over E4M3 block scales of 16
    "nvint4": get_format("nvint4"),
    "mxfp4": get_format("mxfp4"),  # E8M0 block scales
    "mxint8": get_format("mxint8"),
    "int8_channel": get_format("int8"),
    "int8_tensor": get_format("int8_tensor"),
    "int4_group": get_format("int4"),  # per group of 32, a block of an integer element
    "int4_group_asym": get_format("int4_asym"),
    "int8_channel_asym": FormatSpec(element="int8", asymmetric=True, granularity="channel"),
    "int4_tensor_asym": FormatSpec(element="int4", asymmetric=True),
    "fp8_e4m3_g128": get_format("fp8_e4m3_g128"),
    "mxfp4_quartet": get_format("mxfp4_quartet"),
}


@pytest.mark.parametrize("name", sorted(GPTQ_FORMATS))
@pytest.mark.parametrize("axis", [-1, 0])
def test_rounding_one_column_at_a_time_gives_the_bits_of_the_whole(name, axis):
    spec = GPTQ_FORMATS[name]
    x = weights(columns=256) if axis == -1 else weights(columns=256).T.contiguous()
    scales = compute_scales(x, spec, axis=axis)
    whole = round_with_scales(x, scales)
    length = x.shape[axis]
    for j in range(length):
        column = round_with_scales(x.narrow(axis, j, 1), scales.for_slice(j, j + 1))
        assert same_bits(column, whole.narrow(axis, j, 1)), (name, j)
    for start, stop in [(0, length), (32, 160), (5, 40), (17, 20), (200, 256)]:  # aligned, across groups, within one
        part = round_with_scales(x.narrow(axis, start, stop - start), scales.for_slice(start, stop))
        assert same_bits(part, whole.narrow(axis, start, stop - start)), (name, start, stop)
        codes = quantize_with_scales(x.narrow(axis, start, stop - start), scales.for_slice(start, stop))
        # integer codes hold neither NaN nor the sign of zero: equal values elsewhere
        number = ~x.narrow(axis, start, stop - start).isnan()
        assert torch.equal(codes.dequantize()[number], whole.narrow(axis, start, stop - start)[number])


def test_slices_of_slices_and_stochastic_rounding_with_given_noise():
    x = weights()
    scales = compute_scales(x, "nvfp4_sr")
    noise = torch.rand(x.shape, generator=seeded(9))
    whole = round_with_scales(x, scales, noise=noise)
    assert same_bits(whole, fake_quant(x, "nvfp4_sr", generator=seeded(9)))  # the draws along the last axis
    outer = scales.for_slice(8, 72)
    inner = outer.for_slice(3, 50)  # elements [11, 58) of the whole
    assert same_bits(round_with_scales(x[:, 11:58], inner, noise=noise[:, 11:58]), whole[:, 11:58])


def test_scales_layout_block_channel_tensor_and_zero_points():
    x = torch.randn(8, 64, generator=seeded(1)) * 3
    group = compute_scales(x, "int4")  # absmax per group of 32: amax / 7
    expected = x.reshape(8, 2, 32).abs().amax(-1) / 7
    assert group.scale.shape == (8, 2) and group.granule_width == 32 and group.axis == 1
    assert torch.equal(group.scale, expected) and torch.equal(group.block_scale, expected)
    assert group.tensor_scale is None and group.zero_point is None and group.reciprocal is None
    channel = compute_scales(x, "int8", axis=0)
    assert channel.scale.shape == (1, 64) and torch.equal(channel.scale, x.abs().amax(0, keepdim=True) / 127)
    tensor = compute_scales(x, "int8_tensor")
    assert tensor.scale.shape == (1, 1) and torch.equal(tensor.scale, (x.abs().max() / 127).reshape(1, 1))
    asym = compute_scales(x, "int4_asym")
    low = x.reshape(8, 2, 32).amin(-1).clamp(max=0)
    high = x.reshape(8, 2, 32).amax(-1).clamp(min=0)
    assert torch.equal(asym.scale, (high - low) / 15)
    assert torch.equal(asym.zero_point, torch.round(-low / asym.scale))


def test_mx_block_scales_are_the_ocp_power_of_two():
    x = torch.randn(16, 128, generator=seeded(2)) * torch.logspace(-3, 3, 128)
    scales = compute_scales(x, "mxfp4")
    amax = x.reshape(16, 4, 32).abs().amax(-1).double().numpy()
    expected = 2.0 ** (np.floor(np.log2(amax)) - 2)  # emax_elem of E2M1 is 2
    np.testing.assert_array_equal(scales.block_scale.double().numpy(), expected)
    assert torch.equal(scales.reciprocal, 1 / scales.block_scale)


def test_nvfp4_scales_match_torchao_both_levels():
    from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale

    x = torch.randn(128, 512, generator=seeded(4))
    x[:, 7] *= 50
    per_tensor = per_tensor_amax_to_scale(x.abs().amax())
    block_scales, _ = nvfp4_quantize(x, 16, per_tensor)
    scales = compute_scales(x, "nvfp4")
    assert scales.tensor_scale.ndim == 0 and torch.equal(scales.tensor_scale, per_tensor)
    assert torch.equal(scales.block_scale, block_scales.float().reshape(128, 32))
    assert torch.equal(scales.scale, scales.block_scale * scales.tensor_scale)


def test_a_given_tensor_scale_scales_each_group_as_the_whole_tensor_does():
    # GPTQ scaling group by group as it goes: the second level fixed once over the whole weight
    x = weights()
    whole = compute_scales(x, "nvfp4")
    group = compute_scales(x[:, 48:64], "nvfp4", tensor_scale=whole.tensor_scale)
    assert torch.equal(group.block_scale, whole.block_scale[:, 3:4])
    own = compute_scales(x[:, 48:64], "nvfp4")
    assert not torch.equal(own.tensor_scale, whole.tensor_scale)
    with pytest.raises(ConfigError, match="tensor_scale given for format 'mxfp4'"):
        compute_scales(x, "mxfp4", tensor_scale=whole.tensor_scale)


def test_scales_that_do_not_cover_x_are_refused():
    x = weights()
    scales = compute_scales(x, "nvfp4")
    with pytest.raises(ValueError, match=r"scales of shape \(8, 16\).*do not cover x of shape \(8, 1\)"):
        round_with_scales(x[:, :1], scales)
    with pytest.raises(ValueError, match=r"for_slice\(250, 257\): need 0 <= start < stop <= 256"):
        scales.for_slice(250, 257)
    with pytest.raises(ValueError, match="needs stochastic rounding"):
        round_with_scales(x, scales, noise=torch.rand(x.shape))
    with pytest.raises(ConfigError, match="block_size 16 does not divide"):
        compute_scales(x[:, :40], "nvfp4")


def test_a_scale_rule_is_the_enum_from_its_yaml_spelling_and_an_unknown_one_names_the_choices():
    assert get_format("mxfp4").scale_rule is ScaleRule.floor
    assert get_format("mxfp4_quartet").scale_rule is ScaleRule.quartet
    assert FormatSpec(element="int8", granularity="channel").scale_rule is ScaleRule.absmax
    assert FormatSpec(element="fp4_e2m1", scale_rule="rms", clip_ratio=2.0).scale_rule is ScaleRule.rms
    assert [str(rule) for rule in ScaleRule] == ["absmax", "floor", "ceil", "quartet", "rms"]
    choices = r"format.scale_rule: invalid value 'nearest'; valid choices: absmax, floor, ceil, quartet, rms$"
    with pytest.raises(ConfigError, match=choices):
        FormatSpec(element="int8", scale_rule="nearest")
    with pytest.raises(ConfigError, match="invalid value 'FLOOR'"):  # the value as spelled in YAML, not the name
        FormatSpec(element="fp4_e2m1", scale_rule="FLOOR", granularity="block", block_size=32, scale_format="e8m0")


def test_a_scale_rule_set_by_a_hydra_override_is_the_enum_and_a_plain_string_in_the_record():
    from tradeoffs.identity import plain
    from tradeoffs.pipeline.config import config_hash, load_experiment

    config = load_experiment("numerics", ["format=mxfp4", "format.scale_rule=ceil"])
    assert config.format.scale_rule is ScaleRule.ceil
    assert type(plain(config)["format"]["scale_rule"]) is str  # results and plans hold plain strings
    assert config_hash(config) == config_hash(load_experiment("numerics", ["format=mxfp4_ceil", "format.name=mxfp4"]))


def test_is_power_of_two():
    assert [n for n in range(-4, 70) if is_power_of_two(n)] == [1, 2, 4, 8, 16, 32, 64]


def _mxfp4_qsnr_by_hand(x: np.ndarray, block_size: int, rule: str) -> float:
    """QSNR (dB) of MXFP4 computed here from the definitions: floor (OCP) scale 2^(floor(log2 amax) - 2), ceil
    scale 2^ceil(log2(amax / 6)), values divided, clamped to +-6 and rounded to the nearest E2M1 value."""
    grid = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    blocks = x.reshape(-1, block_size)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    exponent = np.floor(np.log2(amax)) - 2 if rule == "floor" else np.ceil(np.log2(amax / 6))
    scaled = np.clip(blocks / 2.0**exponent, -6, 6)
    nearest = grid[np.abs(np.abs(scaled)[..., None] - grid).argmin(-1)]
    error = blocks - np.sign(scaled) * nearest * 2.0**exponent
    return qsnr_db((blocks**2).sum(), (error**2).sum())


def test_under_the_floor_rule_smaller_mxfp4_blocks_lose_qsnr_on_gaussian_data():
    """The OCP floor rule maps a block's maximum into [4, 8) and clips what lies above 6, so every block clips its
    largest values: smaller blocks clip more maxima and, on Gaussian data, lose QSNR (8 -> 64: about +0.55 dB),
    while the ceil rule, which never clips, gains with smaller blocks. Our arithmetic against the definition."""
    x = np.random.default_rng(0).standard_normal(2**18)
    qsnr = {}
    for rule in ("floor", "ceil"):
        for block_size in (8, 64):
            spec = FormatSpec(
                element="fp4_e2m1", granularity="block", block_size=block_size, scale_format="e8m0", scale_rule=rule
            )
            ours = fake_quant(torch.from_numpy(x).float(), spec).double().numpy()
            qsnr[rule, block_size] = qsnr_db((x**2).sum(), ((x - ours) ** 2).sum())
            assert qsnr[rule, block_size] == pytest.approx(_mxfp4_qsnr_by_hand(x, block_size, rule), abs=0.02)
    assert qsnr["floor", 64] - qsnr["floor", 8] > 0.3
    assert qsnr["ceil", 8] - qsnr["ceil", 64] > 0.3
