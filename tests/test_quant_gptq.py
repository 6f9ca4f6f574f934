"""GPTQ against llmcompressor's quantize_weight (bit for bit), against RTN under a diagonal Hessian, its
error on correlated data, and the layer-by-layer calibration of a whole model."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from tradeoffs.formats import FormatSpec, fake_quant, get_format
from tradeoffs.models import GPT, ModelConfig
from tradeoffs.quant import GPTQ, GPTQConfig, RTNConfig, get_spec, gptq_quantize_weight, hessian, quantize_
from tradeoffs.quant.gptq_speed import llmcompressor_gptq
from tradeoffs.quant.structure import decoder_blocks

INT4_G32 = FormatSpec(name="int4_asym_g32", element="int4", asymmetric=True, granularity="block", block_size=32)
INT4_CHANNEL = FormatSpec(name="int4_asym_channel", element="int4", asymmetric=True, granularity="channel")
FP8_CHANNEL = FormatSpec(name="fp8_channel", element="fp8_e4m3", granularity="channel")


def _layer(rows: int = 32, columns: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight and the Hessian of correlated inputs."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, columns, generator=generator)
    mixing = torch.randn(columns, columns, generator=generator)
    inputs = torch.randn(4 * columns, columns, generator=generator) @ mixing * 0.3
    return weight, hessian(inputs)


def _llmcompressor(weight, h, fmt: FormatSpec, settings: GPTQ) -> torch.Tensor:
    """llmcompressor's GPTQ with our up-front scales (a test dependency), checked to have used its grid for every
    column."""
    run = llmcompressor_gptq(weight, h, fmt, settings)
    assert run is not None, "llmcompressor is a test dependency (requirements.lock)"
    quantized, _losses, fallback = run()
    assert not fallback.any()
    return quantized


@pytest.mark.parametrize(
    ("fmt", "settings"),
    [
        (INT4_G32, GPTQ(block_size=128, act_order=False, group_scales="upfront")),
        (INT4_G32, GPTQ(block_size=16, act_order=True, group_scales="upfront")),
        (INT4_CHANNEL, GPTQ(block_size=64, damp=0.1, act_order=True)),
        (FP8_CHANNEL, GPTQ(block_size=32, act_order=True)),
        (get_format("mxfp4"), GPTQ(block_size=128, act_order=True)),
        (get_format("mxfp8_e4m3"), GPTQ(block_size=32, damp=0.05)),
    ],
    ids=["int4-g32", "int4-g32-actorder-b16", "int4-channel-damp0.1", "fp8-channel", "mxfp4-actorder", "mxfp8"],
)
def test_gptq_is_bit_identical_to_llmcompressor(fmt, settings):
    weight, h = _layer()
    ours = gptq_quantize_weight(weight, h, fmt, settings)
    theirs = _llmcompressor(weight, h, fmt, settings)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, fake_quant(weight, fmt, axis=-1))  # GPTQ changed something


@pytest.mark.parametrize("fmt", [INT4_G32, INT4_CHANNEL, get_format("nvfp4"), get_format("mxfp4"), "int3"])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_equals_rtn_under_a_diagonal_hessian(fmt, act_order):
    """No correlations between inputs: nothing to compensate, every column is rounded to nearest (under
    act-order with the groups of the original columns: groups of permuted columns are other groups)."""
    weight, _ = _layer(columns=64)
    h = torch.diag(torch.rand(64, generator=torch.Generator().manual_seed(1)) + 0.1)
    settings = GPTQ(block_size=16, act_order=act_order, group_scales="upfront" if act_order else "auto")
    ours = gptq_quantize_weight(weight, h, fmt, settings)
    assert torch.equal(ours, fake_quant(weight, fmt, axis=-1))


@pytest.mark.parametrize("fmt", [INT4_G32, INT4_CHANNEL, get_format("nvfp4"), "int3"])
def test_gptq_has_lower_output_error_than_rtn_on_correlated_inputs(fmt):
    weight, _ = _layer(columns=128, seed=2)
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(1024, 128, generator=generator) @ torch.randn(128, 128, generator=generator)
    h = hessian(inputs[:512])
    held_out = inputs[512:]

    def error(q):
        return ((held_out @ (q - weight).T) ** 2).mean()

    for settings in (GPTQ(), GPTQ(act_order=True)):
        assert error(gptq_quantize_weight(weight, h, fmt, settings)) < 0.7 * error(fake_quant(weight, fmt, axis=-1))


def test_reached_group_scales_differ_from_upfront_and_stay_on_the_grid():
    weight, h = _layer(columns=128, seed=4)
    # lazy blocks of one group: each group's scales see the updates of all earlier blocks
    reached = gptq_quantize_weight(weight, h, INT4_G32, GPTQ(block_size=32, group_scales="reached"))
    upfront = gptq_quantize_weight(weight, h, INT4_G32, GPTQ(block_size=32, group_scales="upfront"))
    assert not torch.equal(reached, upfront)
    groups = reached.reshape(-1, 32)
    assert max(len(torch.unique(g)) for g in groups) <= 16  # one 4-bit grid per group


def _tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(ModelConfig(d_model=32, n_layer=2, n_head=4, n_kv_head=4, d_ff=128, context_length=32)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_whole_model_gptq_calibrates_each_layer_on_the_quantized_layers_before_it():
    model = _tiny_gpt()
    original = copy.deepcopy(model)
    calibration = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(0))
    spec = get_spec("W4A16")
    settings = GPTQ(block_size=16)
    quantize_(model, GPTQConfig(spec, settings), calibration, batch_size=4)
    # block 1's qkv must be GPTQ of its original weight under the Hessian of block 1's input as the quantized
    # model (block 0 fully quantized) produces it
    captured = []
    handle = model.blocks[1].attn.qkv.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    with torch.no_grad():
        for batch in calibration.split(4):
            model(batch)
    handle.remove()
    from tradeoffs.quant import HessianAccumulator

    accumulator = HessianAccumulator(32)
    for x in captured:
        accumulator.add(x)
    expected = gptq_quantize_weight(
        original.blocks[1].attn.qkv.weight, accumulator.hessian, spec.weight_format, settings
    )
    assert torch.equal(model.blocks[1].attn.qkv.weight, expected)
    # and the whole model is closer to full precision than round-to-nearest
    rtn = copy.deepcopy(original)
    quantize_(rtn, RTNConfig(spec))
    x = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        reference = original(x)[0]
        assert ((model(x)[0] - reference) ** 2).mean() < ((rtn(x)[0] - reference) ** 2).mean()
    assert len(decoder_blocks(model)) == 2


def test_gptq_runs_on_hugging_face_llama_and_gpt2(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    models = [
        LlamaForCausalLM(
            LlamaConfig(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=32,
            )
        ),
        GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32)),
    ]
    calibration = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    for model in models:
        model.eval()
        with torch.no_grad():
            reference = model(input_ids=calibration).logits
        spec = dataclasses.replace(get_spec("W4A16"), weight=INT4_G32, weight_granularity="format")
        result = quantize_(model, GPTQConfig(spec, GPTQ(block_size=16)), calibration)
        assert len(result.bits) == 2 * (7 if isinstance(model, LlamaForCausalLM) else 4)
        with torch.no_grad():
            out = model(input_ids=calibration).logits
        assert 0 < (out - reference).abs().max() < reference.abs().max()
