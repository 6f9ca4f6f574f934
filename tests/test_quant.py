"""quantize_ and its methods on tiny models: function-preserving transforms, LLM.int8() against
bitsandbytes, RTN, KV cache, the methods that need no decoder on a plain nn.Sequential, the registry, and bad
input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tradeoffs.errors import ConfigError
from tradeoffs.evaluate import bits_per_weight
from tradeoffs.formats import FormatSpec, fake_quant, hadamard_matrix
from tradeoffs.models import GPT, ModelConfig
from tradeoffs.quant import (
    GPTQ,
    METHODS,
    FormatSearch,
    GPTQConfig,
    LLMInt8Config,
    LLMInt8Linear,
    OutlierConfig,
    QuantizedLinear,
    RotationConfig,
    RTNConfig,
    SearchConfig,
    SmoothQuantConfig,
    get_spec,
    inject_outliers,
    method_config,
    quantize_,
    register_quantize_handler,
    smooth,
)
from tradeoffs.quant.layers import make_llm_int8, make_quantized
from tradeoffs.quant.rotation import rotate_gpt


def _gpt(norm: str = "layernorm", bias: bool = False, n_kv_head: int = 4) -> GPT:
    torch.manual_seed(0)
    config = ModelConfig(
        d_model=64, n_layer=2, n_head=4, n_kv_head=n_kv_head, d_ff=128, context_length=16, norm=norm, bias=bias
    )
    model = GPT(config).eval()
    with torch.no_grad():  # trained-looking: non-unit gains, biases, larger weights
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _tokens(batch: int = 4, steps: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, steps), generator=torch.Generator().manual_seed(seed))


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[0]


@pytest.mark.parametrize(
    ("norm", "bias", "kv"), [("layernorm", False, 4), ("layernorm", True, 2), ("rmsnorm", False, 1)]
)
def test_rotation_outliers_and_smoothing_preserve_the_full_precision_function(norm, bias, kv):
    model, x = _gpt(norm, bias, kv), _tokens()
    reference = _logits(model, x)
    channels = inject_outliers(model, OutlierConfig(magnitude=50.0, channels=3, seed=1))
    assert len(channels) == 3 and model.blocks[0].ln_1.weight[channels].abs().min() > 1
    torch.testing.assert_close(_logits(model, x), reference, rtol=1e-5, atol=1e-5)
    smooth(model, 0.5, [x])
    torch.testing.assert_close(_logits(model, x), reference, rtol=1e-5, atol=1e-5)
    for name, rotation in rotate_gpt(model, 64, 0, True, []).items():
        make_quantized(model.get_submodule(name), None, None, rotation)
    assert isinstance(model.blocks[0].ln_1, nn.RMSNorm)
    torch.testing.assert_close(_logits(model, x), reference, rtol=1e-5, atol=1e-5)


INT4_PER_HEAD = FormatSpec(name="int4_token", element="int4", granularity="channel")  # per token and head


def _kv_outliers(model: GPT, scale: float = 20.0, channels: tuple[int, ...] = (1, 7)) -> GPT:
    """Function-preserving outlier channels in K and V: key channels times `scale` with the matching query
    channels divided (q.k unchanged), value channels times `scale` with the output projection's columns
    divided."""
    with torch.no_grad():
        for block in model.blocks:
            attn = block.attn
            queries, kv, head_dim = attn.n_head * attn.head_dim, attn.n_kv_head * attn.head_dim, attn.head_dim
            for c in channels:
                for head in range(attn.n_kv_head):
                    attn.qkv.weight[queries + head * head_dim + c] *= scale
                    attn.qkv.weight[queries + kv + head * head_dim + c] *= scale
                for head in range(attn.n_head):
                    attn.qkv.weight[head * head_dim + c] /= scale
                    attn.proj.weight[:, head * head_dim + c] /= scale
    return model


def _captured(module: nn.Module, model: nn.Module, x: torch.Tensor, inputs: bool = False) -> torch.Tensor:
    captured = []
    handle = module.register_forward_hook(lambda _m, args, out: captured.append(args[0] if inputs else out))
    _logits(model, x)
    handle.remove()
    return captured[0]


@pytest.mark.parametrize(
    ("norm", "bias", "kv"), [("layernorm", True, 4), ("layernorm", False, 2), ("rmsnorm", False, 1)]
)
def test_kv_rotation_preserves_the_function_and_rotates_every_head(norm, bias, kv):
    model, x = _gpt(norm, bias, kv).double(), _tokens()
    original, residual_only = copy.deepcopy(model), copy.deepcopy(model)
    for rotated, kv_rotation in ((model, True), (residual_only, False)):
        for name, rotation in rotate_gpt(rotated, 32, 0, True, [], kv_rotation=kv_rotation).items():
            make_quantized(rotated.get_submodule(name), None, None, rotation)
    torch.testing.assert_close(
        _captured(model.lm_head, model, x), _captured(original.lm_head, original, x), rtol=1e-12, atol=1e-12
    )
    for proj in ("blocks.0.attn.proj", "blocks.1.attn.proj"):  # quantized as without the value rotation
        seen = [
            m.get_submodule(proj).weight_input(_captured(m.get_submodule(proj), m, x, inputs=True))
            for m in (model, residual_only)
        ]
        torch.testing.assert_close(seen[0], seen[1], rtol=1e-12, atol=1e-12)
    head = hadamard_matrix(16, signs_seed=0, dtype=torch.float64)
    for block, reference in zip(model.blocks, original.blocks, strict=True):
        rotated, plain = _captured(block.attn.qkv, model, x), _captured(reference.attn.qkv, original, x)
        expected = (plain.reshape(*plain.shape[:-1], -1, 16) @ head).reshape(plain.shape)
        torch.testing.assert_close(rotated, expected, rtol=1e-12, atol=1e-12)  # q, k and v, per head
        assert (rotated - plain).abs().max() > 0.1


def test_kv_rotation_lowers_the_int4_kv_cache_error_on_outlier_channels():
    x = _tokens()
    reference = _logits(_gpt(), x)
    model = _kv_outliers(_gpt())
    torch.testing.assert_close(_logits(model, x), reference, rtol=1e-5, atol=1e-5)
    spec = get_spec("W8A16", weight="fp32", kv_cache=INT4_PER_HEAD)

    def error(kv_rotation: bool) -> float:
        quantized = copy.deepcopy(model)
        result = quantize_(quantized, RotationConfig(spec, kv_rotation=kv_rotation))
        assert len(result.hooks) == 2
        return ((_logits(quantized, x) - reference) ** 2).mean().item()

    unrotated, rotated = error(False), error(True)
    assert unrotated > 0.1  # the INT4 cache does hurt under K/V outlier channels
    assert rotated < 0.5 * unrotated


def test_outliers_make_activations_heavy_tailed_and_hurt_per_tensor_int8():
    x = _tokens()

    def loss_change(config, magnitude):
        model = _gpt()
        inject_outliers(model, OutlierConfig(magnitude=magnitude))
        reference = _logits(model, x)
        quantize_(model, config, x)
        return ((_logits(model, x) - reference) ** 2).mean()

    per_tensor = RTNConfig("W8A8")
    assert loss_change(per_tensor, 60.0) > 10 * loss_change(per_tensor, 1.0)
    for recovering in (LLMInt8Config(), SmoothQuantConfig("W8A8", alpha=0.8)):
        assert loss_change(recovering, 60.0) < 0.2 * loss_change(per_tensor, 60.0)


def test_rtn_rounds_each_weight_and_quantizes_activations_per_forward():
    model, x = _gpt(), _tokens()
    original = copy.deepcopy(model)
    spec = get_spec("W4A8")
    result = quantize_(model, RTNConfig(spec))
    weight = original.blocks[0].mlp.up.weight
    assert torch.equal(model.blocks[0].mlp.up.weight, fake_quant(weight, spec.weight_format, axis=-1))
    assert set(result.bits) == {
        f"blocks.{i}.{n}" for i in range(2) for n in ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")
    }
    assert bits_per_weight(model) == pytest.approx(4 + 32 / 64 * 3 / 4 + 32 / 128 / 4)
    captured = []
    model.blocks[0].mlp.up.register_forward_hook(lambda m, args, out: captured.append((args[0], out)))
    _logits(model, x)
    inputs, out = captured[0]
    expected = fake_quant(inputs, spec.activation_format, axis=-1) @ model.blocks[0].mlp.up.weight.T
    torch.testing.assert_close(out, expected)


def test_kv_cache_quantization_changes_only_keys_and_values():
    model, x = _gpt(), _tokens()
    reference = _logits(model, x)
    result = quantize_(model, RTNConfig(get_spec("W8A16", weight="fp32", weight_granularity="format", kv_cache="int8")))
    assert len(result.hooks) == 2
    qkv = model.blocks[0].attn.qkv
    with torch.no_grad():
        out = qkv(model.blocks[0].ln_1(model.wte(x) + model.wpe(torch.arange(16))))
        raw = nn.functional.linear(model.blocks[0].ln_1(model.wte(x) + model.wpe(torch.arange(16))), qkv.weight)
    torch.testing.assert_close(out[..., :64], raw[..., :64], rtol=0, atol=0)
    assert not torch.equal(out[..., 64:], raw[..., 64:])
    assert not torch.equal(_logits(model, x), reference)


def test_llm_int8_agrees_with_bitsandbytes_linear8bitlt():
    """bitsandbytes (CPU, eval) multiplies the outlier columns with INT8-dequantized weights, takes each
    row's absmax after zeroing only the outlier elements, and rounds through FP16; ours (outlier_weights=int8)
    takes the absmax over the non-outlier columns and computes in FP32, and the default keeps the 16-bit
    weights for the outlier columns: both within 1% (relative Frobenius error) of bitsandbytes."""
    import bitsandbytes as bnb

    generator = torch.Generator().manual_seed(0)
    linear = nn.Linear(128, 64, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(64, 128, generator=generator) * 0.1)
    x = torch.randn(32, 128, generator=generator)
    x[:, [5, 77]] *= 20  # outlier columns
    reference = bnb.nn.Linear8bitLt(128, 64, bias=True, has_fp16_weights=False, threshold=6.0)
    reference.load_state_dict(linear.state_dict())
    reference.eval()
    with torch.no_grad():
        theirs = reference(x.half()).float()
        exact = linear(x)
    for outlier_weights in ("int8", "16bit"):
        ours_linear = make_llm_int8(copy.deepcopy(linear), 6.0, "fp16", outlier_weights)
        with torch.no_grad():
            ours = ours_linear(x)
        assert (ours - theirs).norm() / theirs.norm() < 1e-2
        assert (ours - exact).norm() < (theirs - exact).norm() * (1.05 if outlier_weights == "int8" else 1.0)


@pytest.mark.parametrize(
    ("build", "key", "choice"),
    [
        (lambda: GPTQConfig("W4A4"), "gptq.spec", "W4A16"),
        (lambda: SmoothQuantConfig("W4A16"), "smoothquant.spec", "W8A8"),
        (lambda: method_config("awq"), "method", "smoothquant"),
        (lambda: get_spec("W5A5"), "spec", "W4A16"),
        (lambda: get_spec("W4A16", weight_granularity="row"), "spec.weight_granularity", "channel"),
        (
            lambda: GPTQConfig(get_spec("W4A16", weight="mxfp4"), GPTQ(group_scales="reached")),
            "group_scales",
            "upfront",
        ),
        (lambda: method_config("gptq", gptq={"blocksize": 3}), "method gptq", "block_size"),
    ],
)
def test_bad_configs_name_the_key_and_the_choices(build, key, choice):
    with pytest.raises(ConfigError) as error:
        build()
    assert key in str(error.value) and choice in str(error.value)


def test_bad_inputs_against_the_model_fail_before_any_work():
    model, x = _gpt(), _tokens()
    before = copy.deepcopy(model.state_dict())
    cases = [
        (GPTQConfig(get_spec("W4A16", weight_granularity="group", group_size=48)), x, "spec.weight"),
        (RTNConfig(get_spec("W4A4", activation="mxfp4", weight="mxfp4")), None, None),
        (GPTQConfig("W4A16"), None, "calibration"),
        (RTNConfig(get_spec("W4A16", kv_cache="int4")), None, "spec.kv_cache"),
        (SmoothQuantConfig("W8A8", layers=("blocks.0.attn.proj",)), x, "blocks.0.attn.qkv"),
    ]
    for config, calibration, key in cases:
        if key is None:
            quantize_(copy.deepcopy(model), config, calibration)  # MX blocks of 32 divide 64 and 128
            continue
        with pytest.raises(ConfigError, match=key):
            quantize_(model, config, calibration)
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ConfigError, match="rotation"):
        quantize_(nn.Sequential(nn.ModuleList([nn.Linear(4, 4)])), RotationConfig("W4A4"))


def test_kv_rotation_needs_a_power_of_two_head_dimension_before_any_work():
    torch.manual_seed(0)
    model = GPT(ModelConfig(d_model=48, n_layer=1, n_head=2, n_kv_head=2, d_ff=64, context_length=16)).eval()
    before = copy.deepcopy(model.state_dict())
    spec = get_spec("W4A4", kv_cache=INT4_PER_HEAD)
    with pytest.raises(ConfigError) as error:
        quantize_(model, RotationConfig(spec))
    assert all(s in str(error.value) for s in ("rotation.kv_rotation", "24", "kv_rotation=false", "16, 32"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    quantize_(copy.deepcopy(model), RotationConfig("W4A4"))  # no KV cache format: no head rotation to check
    quantize_(model, RotationConfig(spec, kv_rotation=False))


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16)).eval()


def test_round_to_nearest_quantizes_a_plain_sequential():
    model, x = _mlp(), torch.randn(8, 32)
    original = copy.deepcopy(model)
    spec = get_spec("W4A8")
    result = quantize_(model, RTNConfig(spec))
    assert result.method == "rtn" and set(result.bits) == {"1", "3"}
    for name in ("1", "3"):
        linear = model.get_submodule(name)
        assert isinstance(linear, QuantizedLinear)
        assert torch.equal(linear.weight, fake_quant(original.get_submodule(name).weight, spec.weight_format, axis=-1))
    with torch.no_grad():
        hidden = model[0](x)
        expected = fake_quant(hidden, spec.activation_format, axis=-1) @ model[1].weight.T + model[1].bias
        torch.testing.assert_close(model[1](hidden), expected)


def test_llm_int8_quantizes_a_plain_sequential():
    model, x = _mlp(), 10 * torch.randn(8, 32)
    reference = [make_llm_int8(copy.deepcopy(_mlp()[i]), 6.0, "fp16", "16bit") for i in (1, 3)]
    result = quantize_(model, LLMInt8Config())
    assert result.method == "llm_int8" and all(bits > 16 for bits in result.bits.values())
    with torch.no_grad():
        hidden = model[0](x)
        assert isinstance(model[1], LLMInt8Linear)
        assert torch.equal(model[1](hidden), reference[0](hidden))
        assert torch.equal(model[1].weight, reference[0].weight) and torch.equal(model[3].weight, reference[1].weight)


def test_smoothquant_with_explicit_pairs_quantizes_a_plain_sequential():
    """A LayerNorm with 4 outlier channels (gain x 50) ahead of a Linear: per-tensor INT8 activations lose most of
    the other channels' resolution; SmoothQuant, given the norm -> Linear pair, migrates the scale into the weights
    (4x lower output error here; 6-8x measured over three seeds)."""
    calibration, x = torch.randn(16, 32), torch.randn(64, 32)

    def error(config) -> float:
        torch.manual_seed(0)
        model = nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 64)).eval()
        with torch.no_grad():
            model[0].weight[:4] *= 50
            exact = model(x)
        quantize_(model, config, calibration)
        assert isinstance(model[1], QuantizedLinear)
        with torch.no_grad():
            return float(((model(x) - exact) ** 2).mean())

    smoothed = error(SmoothQuantConfig("W8A8", pairs={"0": ("1",)}))
    assert smoothed < 0.25 * error(RTNConfig("W8A8"))


def test_methods_that_need_decoder_blocks_say_so_before_any_work():
    model, calibration = _mlp(), torch.randn(4, 32)
    before = copy.deepcopy(model.state_dict())
    cases = [
        (GPTQConfig("W4A16"), r"gptq: GPTQ calibrates each layer .* decoder blocks .* Sequential has no nn.ModuleList"),
        (SmoothQuantConfig("W8A8", gptq=GPTQ()), r"smoothquant.pairs: Sequential has no decoder blocks .* `pairs`"),
        (SmoothQuantConfig("W8A8", pairs={"0": ("1",)}, gptq=GPTQ()), r"smoothquant.gptq: GPTQ calibrates"),
        (SmoothQuantConfig("W8A8", pairs={"0": ("3",)}), r"smoothquant.pairs: 0 \(32 channels\).*\['3'\].*\['1'\]"),
        (RotationConfig("W4A4"), r"rotation: folds .* tradeoffs.models.GPT .* Sequential has no wte, wpe, blocks"),
        (
            SearchConfig(
                get_spec("W4A16", weight="fp4_e2m1", weight_granularity="channel"), FormatSearch(objective="output")
            ),
            r"search.objective=output: each layer's output error .* decoder blocks",
        ),
    ]
    for config, match in cases:
        with pytest.raises(ConfigError, match=match):
            quantize_(model, config, calibration)
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ConfigError, match=r"calibration: GPTQConfig needs calibration inputs, a floating tensor"):
        quantize_(model, GPTQConfig("W4A16"), calibration.long())


def test_quantize_dispatches_on_the_config_type_each_method_module_registers():
    assert set(METHODS) >= {"rtn", "gptq", "smoothquant", "rotation", "llm_int8", "search"}
    assert all(config_type.__module__ == f"tradeoffs.quant.{name}" for name, config_type in METHODS.items())
    assert METHODS["search"] is SearchConfig
    with pytest.raises(ConfigError, match=r"config of type OutlierConfig; valid choices: .*RTNConfig"):
        quantize_(_mlp(), OutlierConfig())

    def handler(model, config, targets, batches, result):
        raise AssertionError("never registered")

    handler.__module__ = "elsewhere.rtn"  # a second method named rtn
    with pytest.raises(ValueError, match=r"method 'rtn' is registered for RTNConfig already"):
        register_quantize_handler(GPTQConfig)(handler)
    assert METHODS["rtn"] is RTNConfig and quantize_(_gpt(), GPTQConfig("W4A16"), _tokens()).method == "gptq"
