"""Write a tradeoffs.models.GPT as a Hugging Face transformers model directory (GPT-2 layout), so that
`AutoModelForCausalLM.from_pretrained(dir, local_files_only=True)` reloads it with the same logits and
outside tools (lm-evaluation-harness and others) can evaluate what the pipeline trained or quantized.

The GPT maps onto GPT-2 exactly when it has LayerNorm and multi-head attention: learned positions, pre-norm
blocks, the fused q|k|v projection (GPT-2's c_attn, a Conv1D holding W^T), exact GELU
(activation_function="gelu"), eps 1e-5; missing biases are written as zeros; an untied head is kept
untied. Llama's layout needs rotary positions and a gated MLP, which the GPT does not have, and GPT-2 has
neither RMSNorm nor grouped-query attention: such models raise ValueError naming what does not map.
Quantized weights are exported as their dequantized values (the function of the fake-quantized model).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _unmappable(model: nn.Module) -> list[str]:
    config = model.config
    reasons = []
    if config.norm != "layernorm":
        reasons.append(f"norm={config.norm} (GPT-2 has LayerNorm only; Llama needs rotary positions)")
    if config.n_kv_head != config.n_head:
        reasons.append(f"n_kv_head={config.n_kv_head} != n_head={config.n_head} (GPT-2 has multi-head attention only)")
    online = [n for n, m in model.named_modules() if getattr(m, "rotation", None) is not None]
    if online:
        reasons.append(f"online rotations in {online[:3]} (not expressible as transformers weights)")
    quantized_inputs = [n for n, m in model.named_modules() if getattr(m, "activation_format", None) is not None]
    if quantized_inputs:
        reasons.append(f"quantized activations in {quantized_inputs[:3]}")
    return reasons


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    config = model.config
    d = config.d_model

    def vector(tensor: torch.Tensor | None, size: int) -> torch.Tensor:
        return torch.zeros(size) if tensor is None else tensor.detach().float().clone()

    state = {"transformer.wte.weight": model.wte.weight, "transformer.wpe.weight": model.wpe.weight}
    for i, block in enumerate(model.blocks):
        prefix = f"transformer.h.{i}."
        linears = {
            "attn.c_attn": block.attn.qkv,
            "attn.c_proj": block.attn.proj,
            "mlp.c_fc": block.mlp.up,
            "mlp.c_proj": block.mlp.down,
        }
        for name, linear in linears.items():
            state[prefix + name + ".weight"] = linear.weight.detach().T
            state[prefix + name + ".bias"] = vector(linear.bias, linear.out_features)
        for name, norm in (("ln_1", block.ln_1), ("ln_2", block.ln_2)):
            state[prefix + name + ".weight"] = norm.weight
            state[prefix + name + ".bias"] = vector(norm.bias, d)
    state["transformer.ln_f.weight"] = model.ln_f.weight
    state["transformer.ln_f.bias"] = vector(model.ln_f.bias, d)
    state["lm_head.weight"] = model.lm_head.weight
    return {key: value.detach().float().contiguous().clone() for key, value in state.items()}


@torch.no_grad()
def export_hf(model: nn.Module, directory: str | Path) -> Path:
    """Write `model` (a tradeoffs.models.GPT) to `directory` as a transformers GPT2LMHeadModel (config.json
    and safetensors weights); returns the directory. ValueError when its architecture does not map."""
    if not all(hasattr(model, a) for a in ("config", "wte", "wpe", "blocks", "ln_f", "lm_head")):
        raise ValueError(f"export_hf: expected a tradeoffs.models.GPT, got {type(model).__name__}")
    reasons = _unmappable(model)
    if reasons:
        raise ValueError("export_hf: this GPT does not map onto a transformers layout: " + "; ".join(reasons))
    from transformers import GPT2Config, GPT2LMHeadModel  # imported lazily: transformers is slow to import

    config = model.config
    tied = model.lm_head.weight is model.wte.weight
    hf_config = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.context_length,
        n_embd=config.d_model,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=config.d_ff,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=tied,
        bos_token_id=0,
        eos_token_id=0,
    )
    hf_model = GPT2LMHeadModel(hf_config)
    missing, unexpected = hf_model.load_state_dict(_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"export_hf: state dict mismatch: missing {missing}, unexpected {unexpected}")
    directory = Path(directory)
    hf_model.save_pretrained(directory)
    return directory
