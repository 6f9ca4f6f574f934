"""Optimizer, learning-rate schedule, and emulated low-precision optimizer states (COAT).

AdamW with nanoGPT's parameter groups (weight decay on matrices and embeddings only); linear warmup then
cosine decay to min_lr_fraction of the peak. With a recipe's optimizer_state_format, Adam's two moments are
fake-quantized after every step, per group of the format's block size over the flattened state, optionally
after COAT's dynamic range expansion f(x) = sign(x) |x|^k, where k per group stretches the group's range
max|x| / min|x| onto the format's (max / smallest subnormal), undone after dequantizing.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from tradeoffs.formats import FormatSpec, fake_quant
from tradeoffs.train.config import RecipeConfig, TrainConfig

STATE_NAMES = ("exp_avg", "exp_avg_sq")


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on parameters of 2 or more dimensions only."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the peak learning rate at `step` (0-based): linear warmup, then cosine decay."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.min_lr_fraction + (1 - config.min_lr_fraction) * cosine


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))


def _expansion_exponent(groups: Tensor, spec: FormatSpec) -> Tensor:
    """COAT's k per group: log(format range) / log(group range), 1 where a group has one magnitude."""
    element = spec.element_format
    smallest = 2.0 ** (element.min_exponent - element.man_bits)
    format_range = math.log(element.max_value / smallest)
    magnitude = groups.abs()
    top = magnitude.amax(dim=1, keepdim=True)
    bottom = torch.where(magnitude > 0, magnitude, torch.inf).amin(dim=1, keepdim=True)
    spread = torch.log(top / bottom)
    return torch.where(torch.isfinite(spread) & (spread > 0), format_range / spread, torch.ones_like(spread))


def quantize_state(state: Tensor, spec: FormatSpec, expand: bool) -> Tensor:
    """An optimizer state tensor after storing it in `spec` (flattened into groups of the block size)."""
    block = spec.block_size if spec.granularity == "block" else state.numel()
    flat = state.detach().double().flatten()
    padding = (-flat.numel()) % block
    groups = torch.nn.functional.pad(flat, (0, padding)).reshape(-1, block)
    per_group = dataclasses.replace(spec, granularity="channel", block_size=0)  # one scale per row = group
    if not expand:
        return _unflatten(fake_quant(groups.float(), per_group).double(), state)
    # expand |x| / max|x| (in (0, 1]) so that no power under- or overflows, and scale back after
    top = groups.abs().amax(dim=1, keepdim=True)
    top = torch.where(top > 0, top, torch.ones_like(top))
    k = _expansion_exponent(groups, spec)
    expanded = torch.sign(groups) * (groups.abs() / top).pow(k)
    quantized = fake_quant(expanded.float(), per_group).double()
    return _unflatten(torch.sign(quantized) * quantized.abs().pow(1 / k) * top, state)


def _unflatten(groups: Tensor, like: Tensor) -> Tensor:
    return groups.flatten()[: like.numel()].reshape(like.shape).to(like.dtype)


@torch.no_grad()
def quantize_optimizer_states(optimizer: torch.optim.Optimizer, recipe: RecipeConfig) -> None:
    """Replace Adam's moments by their low-precision storage (no-op for an FP32 state format)."""
    spec = recipe.optimizer_state_format
    if spec.is_identity:
        return
    for state in optimizer.state.values():
        for name in STATE_NAMES:
            if name in state:
                state[name].copy_(quantize_state(state[name], spec, recipe.state_range_expansion))


def state_bytes_per_parameter(recipe: RecipeConfig) -> float:
    """Memory of Adam's two moments per parameter, including per-group scales (and COAT's exponents)."""
    spec = recipe.optimizer_state_format
    if spec.is_identity:
        return 8.0
    block = spec.block_size if spec.granularity == "block" else 0
    per_moment = spec.bits_per_element() / 8
    if recipe.state_range_expansion and block:
        per_moment += 4 / block  # one FP32 exponent k per group
    return 2 * per_moment
