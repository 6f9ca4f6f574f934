"""Exact parameter counts, FLOPs per token and activation counts of the GPT family, from its config alone.

Conventions (docs/models.md):
- Embedding parameters are the token and position embeddings plus the output head (lm_head) when it is not
  tied to the token embedding; everything else (blocks and the final norm) is non-embedding. Kaplan et al.
  (2020) state their scaling laws in the non-embedding count N.
- FLOPs count a multiply-add as 2 FLOPs. Forward per token (Kaplan et al. 2020, Table 1):
  2 N for the dense layers plus 2 n_layer n_ctx d_model for attention over the context (QK^T and AV,
  each 2 n_ctx d_model per layer, halved by the causal mask), plus 2 d_model vocab for the lm_head if asked.
  Training (forward + backward) is 3x forward: C = 6 N + 6 n_layer n_ctx d_model, the 6N rule with the
  attention term (also used by Hoffmann et al. 2022 as their approximation). Norms, softmax, GELU and the
  embedding lookups are not counted.
- Activation counts are the elements per token that the forward produces at each kind of module (inputs of
  every Linear, which is what activation quantization touches, their outputs, norm outputs, the MLP's hidden
  activations, block outputs); a test checks them against forward hooks on the real model.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tradeoffs.models.gpt import ModelConfig


@dataclass(frozen=True)
class ParameterCount:
    """Parameters split into embedding (token, position, untied lm_head) and non-embedding (the rest)."""

    embedding: int
    non_embedding: int

    @property
    def total(self) -> int:
        return self.embedding + self.non_embedding


def _norm_parameters(config: ModelConfig) -> int:
    return config.d_model * (2 if config.norm == "layernorm" and config.bias else 1)


def count_parameters(config: ModelConfig) -> ParameterCount:
    """Exact parameter counts of tradeoffs.models.GPT(config), without building it."""
    d, d_ff, bias = config.d_model, config.d_ff, int(config.bias)
    kv = config.n_kv_head * (d // config.n_head)
    attention = d * (d + 2 * kv) + bias * (d + 2 * kv) + d * d + bias * d
    mlp = d * d_ff + bias * d_ff + d_ff * d + bias * d
    block = attention + mlp + 2 * _norm_parameters(config)
    non_embedding = config.n_layer * block + _norm_parameters(config)
    embedding = config.vocab_size * d + config.context_length * d
    if not config.tie_embeddings:
        embedding += d * config.vocab_size
    return ParameterCount(embedding=embedding, non_embedding=non_embedding)


def module_parameter_count(model: nn.Module) -> ParameterCount:
    """Parameter counts of a built model by the same convention: embedding = every nn.Embedding plus
    `model.lm_head` (shared weights counted once). Works for GPT and the Hugging Face wrapper alike."""
    embedding_ids = {
        id(p)
        for module in [*(m for m in model.modules() if isinstance(m, nn.Embedding)), getattr(model, "lm_head", None)]
        if module is not None
        for p in module.parameters()
    }
    unique = {id(p): p for p in model.parameters()}
    embedding = sum(p.numel() for key, p in unique.items() if key in embedding_ids)
    return ParameterCount(embedding=embedding, non_embedding=sum(p.numel() for p in unique.values()) - embedding)


def flops_breakdown(config: ModelConfig, context_length: int | None = None) -> dict[str, int]:
    """Forward FLOPs per token by term: `dense` (2 N), `attention` (2 n_layer n_ctx d_model) and `lm_head`
    (2 d_model vocab). `context_length` defaults to the model's."""
    n_ctx = context_length or config.context_length
    return {
        "dense": 2 * count_parameters(config).non_embedding,
        "attention": 2 * config.n_layer * n_ctx * config.d_model,
        "lm_head": 2 * config.d_model * config.vocab_size,
    }


def flops_per_token(
    config: ModelConfig, *, training: bool = True, include_lm_head: bool = False, context_length: int | None = None
) -> int:
    """FLOPs per token: training (forward + backward) 6 N + 6 n_layer n_ctx d_model by default (Kaplan's C);
    forward only with training=False; include_lm_head adds the output projection (2 or 6 d_model vocab),
    which matters for small models with a large vocabulary (use it for model FLOPs utilisation)."""
    terms = flops_breakdown(config, context_length)
    forward = terms["dense"] + terms["attention"] + (terms["lm_head"] if include_lm_head else 0)
    return 3 * forward if training else forward


def activation_counts(config: ModelConfig) -> dict[str, int]:
    """Activation elements per token produced by one forward, by module kind (see the module docstring)."""
    d, d_ff, n_layer = config.d_model, config.d_ff, config.n_layer
    kv = config.n_kv_head * (d // config.n_head)
    return {
        "linear_inputs": n_layer * (d + d + d + d_ff) + d,
        "linear_outputs": n_layer * ((d + 2 * kv) + d + d_ff + d) + config.vocab_size,
        "norm_outputs": (2 * n_layer + 1) * d,
        "mlp_activations": n_layer * d_ff,
        "block_outputs": n_layer * d,
    }
