"""Models: the GPT family (counts, FLOPs, activations, attention, KV cache, init), the ladder in conf/model/,
and Hugging Face causal LMs loaded from a local directory."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import ROOT
from tradeoffs.errors import ConfigError
from tradeoffs.models import (
    GPT,
    ModelConfig,
    activation_counts,
    build_model,
    count_parameters,
    flops_breakdown,
    flops_per_token,
    load_hf_model,
    module_parameter_count,
)

SMALL = dict(d_model=32, n_layer=2, n_head=4, n_kv_head=4, d_ff=64, context_length=24, vocab_size=61)
VARIANTS = [
    dict(),
    dict(n_kv_head=2, bias=True),
    dict(n_kv_head=1, norm="rmsnorm"),
    dict(tie_embeddings=True, bias=True, norm="layernorm"),
    dict(n_kv_head=2, norm="rmsnorm", bias=True, tie_embeddings=True),
]
VARIANT_IDS = ["mha", "gqa-bias", "mqa-rms", "tied-bias", "gqa-rms-tied"]


def small(**overrides) -> ModelConfig:
    return ModelConfig(**{**SMALL, **overrides})


def argmax_rollout(model: nn.Module, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding without a cache: the full forward again for every new token."""
    for _ in range(new_tokens):
        prompt = torch.cat([prompt, model(prompt)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    return prompt


def build(config: ModelConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config)


@pytest.mark.parametrize("overrides", VARIANTS, ids=VARIANT_IDS)
def test_parameter_counts_are_exact(overrides):
    config = small(**overrides)
    model = build(config)
    analytic, measured = count_parameters(config), module_parameter_count(model)
    assert analytic == measured
    assert analytic.total == sum(p.numel() for p in model.parameters())
    lm_head = 0 if config.tie_embeddings else config.vocab_size * config.d_model
    assert analytic.embedding == (config.vocab_size + config.context_length) * config.d_model + lm_head


def test_every_projection_is_a_plain_linear():
    model = build(small(n_kv_head=2))
    linears = sorted(name for name, m in model.named_modules() if type(m) is nn.Linear)
    expected = sorted(
        [f"blocks.{i}.{part}" for i in range(2) for part in ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")]
        + ["lm_head"]
    )
    assert linears == expected
    assert model.blocks[0].attn.qkv.out_features == 32 + 2 * 2 * 8


@pytest.mark.parametrize("overrides", VARIANTS[:3], ids=VARIANT_IDS[:3])
def test_activation_counts_match_forward_hooks(overrides):
    config = small(**overrides)
    model = build(config)
    seen = dict.fromkeys(activation_counts(config), 0)

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            seen["linear_inputs"] += inputs[0].numel()
            seen["linear_outputs"] += output.numel()
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            seen["norm_outputs"] += output.numel()
        elif isinstance(module, nn.GELU):
            seen["mlp_activations"] += output.numel()
        elif type(module).__name__ == "Block":
            seen["block_outputs"] += output.numel()

    for module in model.modules():
        module.register_forward_hook(hook)
    batch, steps = 3, 20
    model(torch.randint(0, config.vocab_size, (batch, steps)))
    assert {k: v // (batch * steps) for k, v in seen.items()} == activation_counts(config)
    assert all(v % (batch * steps) == 0 for v in seen.values())


def test_flops_follow_kaplan_and_agree_with_torch_flop_counter():
    config = small(n_kv_head=2)
    n = count_parameters(config).non_embedding
    n_ctx, d = config.context_length, config.d_model
    assert flops_per_token(config) == 6 * n + 6 * config.n_layer * n_ctx * d
    assert flops_per_token(config, training=False) == 2 * n + 2 * config.n_layer * n_ctx * d
    assert flops_per_token(config, include_lm_head=True) - flops_per_token(config) == 6 * d * config.vocab_size
    assert flops_per_token(config, context_length=8) < flops_per_token(config)

    # torch's counter sees every matmul: the Linears (2 x weights; the 2N rule also counts the norms' weights),
    # and attention without the causal saving (QK^T and AV, each 2 n_ctx d per token): twice Kaplan's term.
    # (The counter has no formula for the fused CPU attention kernel, hence the math backend.)
    model, batch = build(config), 2
    idx = torch.randint(0, config.vocab_size, (batch, n_ctx))
    terms = flops_breakdown(config)
    norm_weights = (2 * config.n_layer + 1) * d
    expected_forward = terms["dense"] - 2 * norm_weights + 2 * terms["attention"] + terms["lm_head"]
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx)
    assert counter.get_total_flops() == expected_forward * batch * n_ctx
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx, idx)[1].backward()
    assert counter.get_total_flops() == 3 * expected_forward * batch * n_ctx


def _reference_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Attention by hand: explicit scores, causal mask, softmax, kv head h // group for query head h."""
    batch, steps, d = x.shape
    hd, n_head, n_kv = attn.head_dim, attn.n_head, attn.n_kv_head
    q, k, v = attn.qkv(x).split([d, n_kv * hd, n_kv * hd], -1)
    q = q.view(batch, steps, n_head, hd)
    k = k.view(batch, steps, n_kv, hd)
    v = v.view(batch, steps, n_kv, hd)
    out = torch.empty(batch, steps, n_head, hd)
    mask = torch.ones(steps, steps).tril().bool()
    for h in range(n_head):
        g = h // (n_head // n_kv)
        scores = q[:, :, h] @ k[:, :, g].transpose(1, 2) / math.sqrt(hd)
        out[:, :, h] = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v[:, :, g]
    return attn.proj(out.reshape(batch, steps, d))


@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_attention_matches_a_hand_written_reference(n_kv_head):
    model = build(small(n_kv_head=n_kv_head))
    x = torch.randn(2, 11, 32)
    attn = model.blocks[0].attn
    torch.testing.assert_close(attn(x), _reference_attention(attn, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_kv_head", [4, 2], ids=["mha", "gqa"])
def test_prefill_and_decode_with_the_cache_match_the_full_forward(n_kv_head):
    model = build(small(n_kv_head=n_kv_head)).eval()
    idx = torch.randint(0, 61, (3, 20))
    full, _ = model(idx)
    logits, cache = model.prefill(idx[:, :8])
    torch.testing.assert_close(logits, full[:, 7], rtol=1e-5, atol=1e-5)
    logits, cache = model.prefill(idx[:, 8:12], cache)  # a chunk after cached positions
    torch.testing.assert_close(logits, full[:, 11], rtol=1e-5, atol=1e-5)
    for i in range(12, 20):
        logits, cache = model.decode_step(idx[:, i], cache)
        torch.testing.assert_close(logits, full[:, i], rtol=1e-5, atol=1e-5)
    assert cache.length == 20


def test_greedy_generate_equals_argmax_rollout_without_cache():
    model = build(small()).eval()
    prompt = torch.randint(0, 61, (2, 5))
    out = model.generate(prompt, 10)
    assert torch.equal(out, argmax_rollout(model, prompt, 10))
    with pytest.raises(ValueError, match=r"exceeds model\.context_length=24"):
        model.generate(prompt, 21)  # 5 + 20 positions to run; the last new token is never fed back


def test_init_is_deterministic_given_the_seed_and_loss_is_in_nats():
    config = small(bias=True)
    a, b, c = build(config, 7), build(config, 7), build(config, 8)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    std = a.blocks[0].mlp.down.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(4), rel=0.1)
    assert a.blocks[0].attn.qkv.bias.abs().sum() == 0
    idx = torch.randint(0, 61, (4, 24))
    logits, loss = a(idx, idx)
    assert logits.dtype == torch.float32 and logits.shape == (4, 24, 61)
    assert loss.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, 61), idx.reshape(-1)).item())
    assert loss.item() == pytest.approx(math.log(61), abs=0.05)  # near uniform at init


def test_a_few_adamw_steps_learn_a_repeating_sequence():
    model = build(small())
    pattern = torch.arange(25) % 7
    x, y = pattern[:-1][None].repeat(4, 1), pattern[1:][None].repeat(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(x, y)[1].item()
    for _ in range(30):
        loss = model(x, y)[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(n_kv_head=3), "n_kv_head=3 does not divide model.n_head=4"),
        (dict(n_head=5), "n_head=5 does not divide model.d_model=32"),
        (dict(norm="batchnorm"), "layernorm, rmsnorm"),
        (dict(family="hf"), "needs model.path"),
        (dict(family="jax"), "gpt, hf"),
        (dict(dropout=1.0), "dropout must be in [0, 1)"),
        (dict(d_ff=0), "model.d_ff: must be > 0"),
    ],
)
def test_bad_model_config_is_rejected(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        small(**overrides)


LADDER = sorted(
    (p for p in (ROOT / "conf" / "model").glob("gpt-*.yaml") if re.fullmatch(r"gpt-\d+[km]", p.stem)),
    key=lambda p: int(p.stem[4:-1]) * (1000 if p.stem.endswith("k") else 1_000_000),
)


def test_the_ladder_spans_20k_to_30m_and_each_rung_matches_its_name():
    assert LADDER[0].stem == "gpt-20k" and LADDER[-1].stem == "gpt-30m"
    counts = []
    for path in LADDER:
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path)))
        nominal = int(path.stem[4:-1]) * (1000 if path.stem.endswith("k") else 1_000_000)
        counts.append(count_parameters(config).non_embedding)
        assert 0.8 * nominal <= counts[-1] <= 1.25 * nominal, f"{path.stem}: {counts[-1]:,} non-embedding parameters"
    assert counts == sorted(counts) and len(set(counts)) == len(counts) >= 6


# --------------------------------------------------------------------------------------- Hugging Face
@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Tiny random Llama (GQA, untied) and GPT-2 (tied, learned positions) saved with save_pretrained."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        llama = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=48,
                bos_token_id=0,
                eos_token_id=1,
            )
        )
        gpt2 = GPT2LMHeadModel(
            GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=48, bos_token_id=0, eos_token_id=1)
        )
        dirs = {}
        for name, model in (("llama", llama), ("gpt2", gpt2)):
            dirs[name] = tmp_path_factory.mktemp(name)
            model.save_pretrained(dirs[name])
        yield dirs


def test_hf_llama_from_a_local_directory_behind_the_gpt_interface(hf_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_model(ModelConfig(family="hf", path=str(hf_dirs["llama"])))
    assert model.vocab_size == 64 and model.context_length == 48
    idx = torch.randint(0, 64, (2, 16))
    logits, loss = model(idx[:, :-1], idx[:, 1:])
    assert logits.dtype == torch.float32 and logits.shape == (2, 15, 64)
    reference = model.model(input_ids=idx, labels=idx).loss  # transformers shifts the labels itself
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    counts = module_parameter_count(model)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.embedding == 2 * 64 * 32  # embed_tokens + untied lm_head; rotary positions have no weights
    full, _ = model(idx)
    logits, cache = model.prefill(idx[:, :9])
    torch.testing.assert_close(logits, full[:, 8], rtol=1e-5, atol=1e-5)
    for i in range(9, 16):
        logits, cache = model.decode_step(idx[:, i], cache)
        torch.testing.assert_close(logits, full[:, i], rtol=1e-5, atol=1e-5)


def test_hf_gpt2_counts_tied_and_position_embeddings_once(hf_dirs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_hf_model(hf_dirs["gpt2"])
    counts = module_parameter_count(model)
    assert counts.embedding == (64 + 48) * 32  # wte (shared with lm_head) + wpe
    assert counts.total == sum(p.numel() for p in model.parameters())
    prompt = torch.randint(0, 64, (2, 4))
    out = model.generate(prompt, 6)
    assert torch.equal(out, argmax_rollout(model, prompt, 6))


def test_hf_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"no config\.json.*save_pretrained"):
        load_hf_model(tmp_path / "nowhere")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpt_runs_on_cuda_under_bf16_autocast_and_decodes_like_the_full_forward():
    model = build(small(n_kv_head=2)).cuda()
    idx = torch.randint(0, 61, (2, 20), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, loss = model(idx, idx)
    assert logits.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    model.eval()
    full, _ = model(idx)
    logits, cache = model.prefill(idx[:, :10])
    for i in range(10, 20):
        logits, cache = model.decode_step(idx[:, i], cache)
        torch.testing.assert_close(logits, full[:, i], rtol=1e-3, atol=1e-3)
