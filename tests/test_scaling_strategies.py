"""Scaling strategies: counts of the small CNN and of scaled GPTs against hand counts and the real models,
FLOPs matched across strategies, and the exponents of activations against the FLOPs growth."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tradeoffs.errors import ConfigError
from tradeoffs.fit import exponents_by_group
from tradeoffs.models import ModelConfig, module_parameter_count
from tradeoffs.models.cnn import CNN, CNNConfig, conv_layers, count_cnn, synthetic_images
from tradeoffs.models.scaling import build, model_counts, scale, scaling_series, shares, synthetic_batch

TINY_CNN = CNNConfig(image_size=8, in_channels=3, width=4, depth=1, n_stages=2, n_classes=5)
TINY_GPT = ModelConfig(d_model=8, n_layer=1, n_head=2, n_kv_head=2, d_ff=32, context_length=4, vocab_size=16)


def test_cnn_counts_match_hand_counts():
    # conv 3->4 at 8x8 (stride 1), conv 4->8 to 4x4 (stride 2), head 8->5
    assert [(c.in_channels, c.out_channels, c.stride, c.out_size) for c in conv_layers(TINY_CNN)] == [
        (3, 4, 1, 8),
        (4, 8, 2, 4),
    ]
    counts = count_cnn(TINY_CNN)
    assert counts.parameters == (9 * 3 * 4 + 2 * 4) + (9 * 4 * 8 + 2 * 8) + (8 * 5 + 5) == 465
    assert counts.flops == 2 * 9 * 3 * 4 * 64 + 2 * 9 * 4 * 8 * 16 + 2 * 8 * 5 == 23120
    assert counts.activations == 4 * 64 + 8 * 16 == 384


@pytest.mark.parametrize(
    "config", [TINY_CNN, CNNConfig(), CNNConfig(image_size=15, width=6, depth=3, n_stages=3, kernel_size=5)]
)
def test_cnn_counts_match_the_real_model(config):
    model = CNN(config)
    outputs = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].numel()))
    images, labels = synthetic_images(config, 2, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        _, loss = model(images, labels)
    counts = count_cnn(config)
    assert sum(p.numel() for p in model.parameters()) == counts.parameters
    assert counter.get_total_flops() == 2 * counts.flops  # a batch of two images
    assert sum(outputs) == counts.activations
    assert loss.isfinite()


def test_gpt_counts_per_sequence_match_hand_counts():
    # non-embedding N: qkv 8*24, proj 8*8, mlp 2*8*32, two norms of 8 per block, the final norm
    n = 8 * 24 + 64 + 2 * 8 * 32 + 16 + 8
    counts = model_counts(TINY_GPT)
    assert counts.parameters == n == 792
    assert counts.flops == 4 * (2 * n + 2 * 1 * 4 * 8)  # per token 2N + attention, times 4 positions
    assert counts.activations == 4 * (24 + 8 + 32 + 8)  # qkv, proj, up, down outputs per token
    assert counts.total_parameters == n + 16 * 8 + 4 * 8 + 8 * 16


def test_scaling_a_tiny_gpt_by_hand():
    depth = scale(TINY_GPT, "depth", 2)
    assert (depth.config.n_layer, depth.config.d_model) == (2, 8)
    assert depth.counts.flops == 4 * (2 * (2 * 784 + 8) + 2 * 2 * 4 * 8)
    width = scale(TINY_GPT, "width", 4)  # d_model 16 (FLOPs x3.86) is nearer x4 than 18 (x4.87)
    assert (width.config.d_model, width.config.d_ff, width.config.n_layer) == (16, 64, 1)
    assert width.flops_factor == pytest.approx(6368 / 1648)
    assert module_parameter_count(build(width.config)).non_embedding == width.counts.parameters


def test_strategies_match_flops_and_build():
    base = ModelConfig(d_model=128, n_layer=4, n_head=4, n_kv_head=4, d_ff=512, context_length=64)
    for scaled in scaling_series(base, factors=(1, 4)):
        assert scaled.flops_factor == pytest.approx(scaled.factor, rel=0.05)
    cnn = scaling_series(CNNConfig(depth=4), factors=(2,), strategy_names=("resolution", "compound"))
    assert [m.config.image_size > 32 for m in cnn] == [True, True]
    model, batch = build(cnn[0].config), synthetic_batch(cnn[0].config, 2, torch.Generator().manual_seed(0))
    assert model(*batch)[1].isfinite()
    tokens, targets = synthetic_batch(base, 3, torch.Generator().manual_seed(0))
    assert tokens.shape == targets.shape == (3, 64)
    assert torch.equal(tokens[:, 1:], targets[:, :-1])


def _activation_exponents(base, alpha=0.8):
    records = [m.record() for m in scaling_series(base, factors=(1, 2, 4, 8, 16), alpha=alpha)]
    return {
        r.estimates[0].labels["strategy"]: r.estimates[0]
        for r in exponents_by_group(records, "flops_factor", ("activations",))
    }


@pytest.mark.parametrize(
    "base",
    [ModelConfig(d_model=128, n_layer=4, n_head=4, n_kv_head=4, d_ff=512, context_length=64), CNNConfig(depth=4)],
    ids=["gpt", "cnn"],
)
def test_activations_grow_as_sqrt_s_for_width_and_s_for_depth(base):
    exponents = _activation_exponents(base)
    assert exponents["width"].value == pytest.approx(0.5, abs=0.03)
    assert exponents["depth"].value == pytest.approx(1.0, abs=0.06)  # CNN: 0.947 (a stage's strided conv costs half)
    # compound with alpha = 0.8: 1 - alpha / 2 = 0.6 in the leading-order counts
    assert exponents["compound"].value == pytest.approx(0.6, abs=0.05)
    assert exponents["width"].value < exponents["compound"].value < exponents["depth"].value


def test_uniform_compound_sits_nearer_depth():
    exponents = _activation_exponents(CNNConfig(depth=4), alpha=1 / 3)
    assert exponents["compound"].value == pytest.approx(5 / 6, abs=0.06)


def test_bad_strategy_names_the_choices():
    with pytest.raises(ConfigError, match="valid choices: width, depth, context, compound"):
        scale(TINY_GPT, "resolution", 2)
    with pytest.raises(ConfigError, match="alpha"):
        shares(TINY_CNN, "compound", alpha=1.5)
    with pytest.raises(ConfigError, match="factor"):
        scale(TINY_CNN, "width", 0)
    with pytest.raises(ConfigError, match="kernel_size"):
        CNNConfig(kernel_size=4)
