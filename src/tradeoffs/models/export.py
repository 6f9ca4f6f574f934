"""Write a tradeoffs.models.GPT as a Hugging Face transformers model directory (GPT-2 layout), so that
`AutoModelForCausalLM.from_pretrained(dir, local_files_only=True)` reloads it with the same logits and
outside tools (lm-evaluation-harness and others) can evaluate what the pipeline trained or quantized.

The GPT maps onto GPT-2 exactly when it has LayerNorm and multi-head attention: learned positions, pre-norm
blocks, the fused q|k|v projection (GPT-2's c_attn, a Conv1D holding W^T), exact GELU
(activation_function="gelu"), eps 1e-5; missing biases are written as zeros; an untied head is kept
untied. Llama's layout needs rotary positions and a gated MLP, which the GPT does not have, and GPT-2 has
neither RMSNorm nor grouped-query attention: such models raise ValueError naming what does not map.
Quantized weights are exported as their dequantized values (the function of the fake-quantized model).

Only a model whose function its weights carry is exported. That is decided by what the model does, not by
attribute names: every Linear's output on a probe input (with outlier columns) must equal its weights' product
(activation quantization, LLM.int8()'s outlier decomposition and online rotations fail this), no module may
carry forward hooks (KV-cache quantization lives in hooks) and every other module must be one of the GPT's own
layers; finally the written directory is reloaded with transformers and its logits compared with the model's.
A refusal raises ValueError naming the modules and why, and leaves nothing behind. The directory is written
atomically (a temporary directory renamed into place); a non-empty one is replaced only with overwrite=True.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tradeoffs.models.gpt import GPT, MLP, Block, CausalSelfAttention

PLAIN_MODULES = (GPT, Block, CausalSelfAttention, MLP, nn.ModuleList, nn.LayerNorm, nn.Embedding, nn.Dropout, nn.GELU)
RELATIVE_TOLERANCE = 1e-5  # float32 logits of the same weights through two implementations agree to about 1e-6


def _unmappable(model: nn.Module) -> list[str]:
    config = model.config
    reasons = []
    if config.norm != "layernorm":
        reasons.append(f"norm={config.norm} (GPT-2 has LayerNorm only; Llama needs rotary positions)")
    if config.n_kv_head != config.n_head:
        reasons.append(f"n_kv_head={config.n_kv_head} != n_head={config.n_head} (GPT-2 has multi-head attention only)")
    return reasons + _functions_weights_cannot_carry(model)


def _probe(features: int) -> torch.Tensor:
    """A probe input for a Linear: Gaussian rows with two outlier columns (large enough to trip LLM.int8()'s
    threshold of 6 and to show any activation quantization)."""
    x = torch.randn(4, features, generator=torch.Generator().manual_seed(0))
    x[:, : min(2, features)] *= 20.0
    return x


def _hooks(module: nn.Module) -> list[str]:
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return [getattr(h, "__qualname__", type(h).__name__) for h in hooks]


@torch.no_grad()
def _functions_weights_cannot_carry(model: nn.Module) -> list[str]:
    """Each module whose function is more than its weights, with why: a Linear whose output differs from
    F.linear of its weights, a module with forward hooks, a module that is not one of the GPT's plain layers."""
    reasons = []
    global_hooks = [*nn.modules.module._global_forward_hooks.values()]
    global_hooks += [*nn.modules.module._global_forward_pre_hooks.values()]
    if global_hooks:
        reasons.append(f"{len(global_hooks)} global forward hook(s) change every module's output at run time")
    for name, module in model.named_modules():
        name = name or type(module).__name__
        if hooks := _hooks(module):
            reasons.append(f"{name}: forward hooks {hooks} change its output at run time (e.g. KV-cache quantization)")
        if isinstance(module, nn.Linear):
            x = _probe(module.in_features).to(module.weight.device, module.weight.dtype)
            plain = F.linear(x, module.weight, module.bias)
            moved = (module.forward(x) - plain).abs().max().item()
            if moved > RELATIVE_TOLERANCE * plain.abs().max().item():
                reasons.append(
                    f"{name} ({type(module).__name__}): its output differs from its weights' product by {moved:.3g} "
                    "(activation quantization, an outlier decomposition or an online rotation)"
                )
        elif not isinstance(module, PLAIN_MODULES) or type(module).forward is not _plain_forward(module):
            reasons.append(f"{name}: {type(module).__name__} is not a layer of the GPT-2 layout")
    return reasons


def _plain_forward(module: nn.Module):
    """The forward of the plain layer class `module` is an instance of (a subclass overriding it is not plain)."""
    base = next(cls for cls in PLAIN_MODULES if isinstance(module, cls))
    return base.forward


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


def _check_target(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"export_hf: {directory} is a file; give a directory (new, empty, or with overwrite)")
    if directory.is_dir() and not overwrite:
        entries = sorted(p.name for p in directory.iterdir())
        if entries:
            raise ValueError(
                f"export_hf: {directory} is not empty ({len(entries)} entries: {', '.join(entries[:5])}); "
                "export into a new or empty directory, or pass overwrite=True (--overwrite) to replace it"
            )


@torch.no_grad()
def _check_reloaded(model: nn.Module, directory: Path) -> None:
    """Reload the written directory with transformers and compare its logits with the model's on a probe batch."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).eval()
    length = min(model.config.context_length, 32)
    tokens = torch.randint(0, model.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    expected = model(tokens.to(device))[0].float().cpu()
    moved = (reloaded(input_ids=tokens).logits - expected).abs().max().item()
    if moved > RELATIVE_TOLERANCE * max(1.0, expected.abs().max().item()):
        raise ValueError(f"export_hf: the reloaded model's logits differ from the model's by {moved:.3g}")


@torch.no_grad()
def export_hf(model: nn.Module, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write `model` (a tradeoffs.models.GPT) to `directory` as a transformers GPT2LMHeadModel (config.json
    and safetensors weights), atomically, after checking that its weights carry its whole function; returns
    the directory. ValueError when its architecture does not map, when a module computes more than its
    weights, when `directory` is a file, or when it is not empty and `overwrite` is False."""
    if not all(hasattr(model, a) for a in ("config", "wte", "wpe", "blocks", "ln_f", "lm_head")):
        raise ValueError(f"export_hf: expected a tradeoffs.models.GPT, got {type(model).__name__}")
    directory = Path(directory)
    _check_target(directory, overwrite)
    reasons = _unmappable(model)
    if reasons:
        raise ValueError(
            "export_hf: this model's function does not map onto transformers weights: " + "; ".join(reasons)
        )
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
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.export-", dir=directory.parent))
    try:
        hf_model.save_pretrained(staging)
        _check_reloaded(model, staging)
        _replace_directory(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _replace_directory(new: Path, directory: Path) -> None:
    """Move `new` into place as `directory`; an existing `directory` is set aside first and removed only once
    the new one is in place."""
    if not directory.exists():
        os.replace(new, directory)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    os.replace(directory, old / directory.name)
    os.replace(new, directory)
    shutil.rmtree(old, ignore_errors=True)
