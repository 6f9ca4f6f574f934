"""A GPT in the style of nanoGPT, readable in one sitting.

Pre-norm decoder blocks (LayerNorm or RMSNorm), learned absolute position embeddings, causal self-attention
through torch's scaled_dot_product_attention with multi-head, grouped-query or multi-query key/value heads
(the kv heads are repeated to the query heads), a GELU MLP and an untied (by default) output head.

Every projection is a plain torch.nn.Linear (`attn.qkv`, `attn.proj`, `mlp.up`, `mlp.down`, `lm_head`),
so a precision recipe can swap them by module replacement. `forward` returns fp32 logits and the
cross-entropy in nats. Weights are drawn from torch's global generator: seed it before building a model
(`torch.manual_seed(seed)`) and the same config gives the same weights.

For inference benchmarks, `prefill` and `decode_step` run the prompt and one new token separately with a
preallocated key/value cache; `generate` is greedy decoding built from the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.identity import descriptive


@dataclass
class ModelConfig:
    """A model (conf/model/): a GPT of the project's own family (tradeoffs.models.gpt), or a Hugging Face
    causal LM loaded from a local directory (family=hf, path=...; the architecture fields are then unused)."""

    name: str = descriptive("gpt-tiny")
    family: str = "gpt"
    path: str = ""  # family=hf: a local directory written by save_pretrained
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int = 4  # = n_head: multi-head; 1 < n_kv_head < n_head: grouped-query; 1: multi-query
    d_ff: int = 256
    context_length: int = 128
    vocab_size: int = 256
    norm: str = "layernorm"
    bias: bool = False  # biases in every Linear and LayerNorm
    tie_embeddings: bool = False  # lm_head shares the token embedding's weight
    dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        check_choice("model.family", self.family, ("gpt", "hf"))
        if self.family == "hf" and not self.path:
            raise ConfigError("model: family=hf needs model.path, a local directory written by save_pretrained")
        for key in ("d_model", "n_layer", "n_head", "n_kv_head", "d_ff", "context_length", "vocab_size"):
            check_positive(f"model.{key}", getattr(self, key))
        check_choice("model.norm", self.norm, ("layernorm", "rmsnorm"))
        check_positive("model.init_std", self.init_std)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.d_model % self.n_head:
            raise ConfigError(f"model.n_head={self.n_head} does not divide model.d_model={self.d_model}")
        if self.n_head % self.n_kv_head:
            raise ConfigError(
                f"model.n_kv_head={self.n_kv_head} does not divide model.n_head={self.n_head} "
                "(n_kv_head = n_head for MHA, a divisor for GQA, 1 for MQA)"
            )


@dataclass
class KVCache:
    """Keys and values of every layer, preallocated to `max_length` positions; `length` are filled."""

    max_length: int
    keys: list[Tensor | None] = field(default_factory=list)
    values: list[Tensor | None] = field(default_factory=list)
    length: int = 0


def make_norm(config: ModelConfig) -> nn.Module:
    """The block's normalisation layer: LayerNorm (with a bias only if config.bias) or RMSNorm."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=1e-5)
    return nn.LayerNorm(config.d_model, eps=1e-5, bias=config.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with n_kv_head key/value heads shared by groups of query heads."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.d_model // config.n_head
        kv_dim = self.n_kv_head * self.head_dim
        self.qkv = nn.Linear(config.d_model, config.d_model + 2 * kv_dim, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        batch, steps, d_model = x.shape
        q, k, v = self.qkv(x).split([d_model, self.n_kv_head * self.head_dim, self.n_kv_head * self.head_dim], -1)
        q = q.view(batch, steps, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(batch, steps, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(batch, steps, self.n_kv_head, self.head_dim).transpose(1, 2)
        start = 0
        if cache is not None:
            k, v, start = _cache_append(cache, layer, k, v)
        if self.n_kv_head != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        mask, causal = None, start == 0 and steps > 1
        if start > 0 and steps > 1:  # a chunk after cached positions: query i sees keys up to start + i
            mask = torch.ones(steps, start + steps, dtype=torch.bool, device=x.device).tril(diagonal=start)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(batch, steps, d_model)
        return self.resid_dropout(self.proj(y))


def _cache_append(cache: KVCache, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, int]:
    """Write this step's keys/values into the layer's buffers; return all filled positions and the start."""
    start, steps = cache.length, k.shape[2]
    if start + steps > cache.max_length:
        raise ValueError(f"KV cache holds {cache.max_length} positions; cannot add {steps} after {start}")
    if len(cache.keys) <= layer:
        shape = (k.shape[0], k.shape[1], cache.max_length, k.shape[3])
        cache.keys.append(k.new_zeros(shape))
        cache.values.append(v.new_zeros(shape))
    cache.keys[layer][:, :, start : start + steps] = k
    cache.values[layer][:, :, start : start + steps] = v
    return cache.keys[layer][:, :, : start + steps], cache.values[layer][:, :, : start + steps], start


class MLP(nn.Module):
    """Position-wise feed-forward: Linear(d_model, d_ff), GELU, Linear(d_ff, d_model)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.act = nn.GELU()
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.down(self.act(self.up(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The GPT of a ModelConfig: token + position embeddings, n_layer blocks, final norm, lm_head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.family != "gpt":
            raise ValueError(f"GPT needs model.family=gpt, got {config.family!r} (use tradeoffs.models.build_model)")
        self.config = config
        self.vocab_size, self.context_length = config.vocab_size, config.context_length
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.context_length, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, init_std) for weights and embeddings, zero biases, unit norms, and the
        residual projections (attn.proj, mlp.down) scaled by 1/sqrt(2 n_layer). A weightless model (built on the
        meta device to check shapes) has no values to set: skipped (a process's first normal_ on the meta device
        loads torch's reference kernels, seconds of a plan's time)."""
        if self.wte.weight.is_meta:
            return
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                residual = name.endswith(("attn.proj", "mlp.down"))
                nn.init.normal_(module.weight, 0.0, std / math.sqrt(2 * self.config.n_layer) if residual else std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.reset_parameters()

    def _hidden(self, idx: Tensor, cache: KVCache | None = None) -> Tensor:
        start = cache.length if cache is not None else 0
        steps = idx.shape[1]
        if start + steps > self.context_length:
            raise ValueError(f"sequence of {start + steps} tokens exceeds model.context_length={self.context_length}")
        positions = torch.arange(start, start + steps, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length += steps
        return self.ln_f(x)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (batch, steps, vocab) in fp32 for token ids `idx` (batch, steps), and the mean
        cross-entropy in nats against `targets` (same shape; the next tokens) when given."""
        logits = self.lm_head(self._hidden(idx)).float()
        return logits, None if targets is None else language_model_loss(logits, targets)

    def new_cache(self, max_length: int | None = None) -> KVCache:
        """An empty key/value cache for up to `max_length` (default: context_length) positions."""
        return KVCache(max_length=min(max_length or self.context_length, self.context_length))

    @torch.no_grad()
    def prefill(self, idx: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """Run the prompt `idx` (batch, steps) into a (new) cache; fp32 logits (batch, vocab) of its last position."""
        cache = cache if cache is not None else self.new_cache()
        return self.lm_head(self._hidden(idx, cache)[:, -1]).float(), cache

    @torch.no_grad()
    def decode_step(self, token: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        """One new token per sequence (batch,) after the cached positions; fp32 logits (batch, vocab)."""
        return self.lm_head(self._hidden(token.reshape(-1, 1), cache)[:, -1]).float(), cache

    def generate(self, idx: Tensor, max_new_tokens: int) -> Tensor:
        """Greedy decoding: the prompt followed by `max_new_tokens` argmax tokens, (batch, steps + new)."""
        return greedy_generate(self, idx, max_new_tokens, self.new_cache(idx.shape[1] + max_new_tokens))


def language_model_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in nats of logits (..., vocab) against the next tokens `targets` (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def greedy_generate(model: nn.Module, idx: Tensor, max_new_tokens: int, cache: object = None) -> Tensor:
    """Greedy decoding through a model's prefill/decode_step: the prompt then `max_new_tokens` argmax tokens."""
    logits, cache = model.prefill(idx, cache)
    tokens = [idx]
    for step in range(max_new_tokens):
        token = logits.argmax(-1)
        tokens.append(token[:, None])
        if step + 1 < max_new_tokens:
            logits, cache = model.decode_step(token, cache)
    return torch.cat(tokens, dim=1)
