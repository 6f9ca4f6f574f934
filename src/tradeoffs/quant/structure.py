"""Where the Linears of a decoder sit: the repeated blocks, the norm feeding each Linear, the blocks' inputs.

Found by running the model, not by module names: a Linear is fed by a norm when its input is that norm's
output tensor, and the blocks are the model's largest nn.ModuleList. This covers tradeoffs.models.GPT and
Hugging Face causal LMs (whose GPT-2 Conv1D projections `as_linears` turns into nn.Linear first).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError

NORM_TYPES = (nn.LayerNorm, nn.RMSNorm)


def is_norm(module: nn.Module) -> bool:
    """LayerNorm/RMSNorm, or a Hugging Face RMSNorm class (LlamaRMSNorm...) with a gain."""
    return isinstance(module, NORM_TYPES) or (
        type(module).__name__.endswith("RMSNorm") and isinstance(getattr(module, "weight", None), nn.Parameter)
    )


@torch.no_grad()
def as_linears(model: nn.Module) -> int:
    """Replace transformers' Conv1D projections (GPT-2: y = x W + b, W of shape (in, out)) by equivalent
    nn.Linear modules in place; returns how many were replaced."""
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module).__name__ != "Conv1D" or not hasattr(module, "nf"):
            continue
        weight = module.weight
        linear = nn.Linear(weight.shape[0], weight.shape[1], bias=module.bias is not None)
        linear = linear.to(device=weight.device, dtype=weight.dtype)
        linear.weight.copy_(weight.T)
        if module.bias is not None:
            linear.bias.copy_(module.bias)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, linear)
        replaced += 1
    return replaced


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's repeated decoder blocks: its nn.ModuleList holding the most parameters."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of decoder blocks")
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def output_head(model: nn.Module) -> nn.Linear | None:
    """The output projection (`lm_head`), when it is an nn.Linear."""
    head = getattr(model, "lm_head", None)
    return head if isinstance(head, nn.Linear) else None


def has_blocks(model: nn.Module) -> bool:
    """Whether the model has decoder blocks (an nn.ModuleList) for the methods that run it block by block."""
    return any(isinstance(m, nn.ModuleList) and len(m) for m in model.modules())


def require_blocks(model: nn.Module, key: str, what: str) -> None:
    """ConfigError naming `key` unless the model has decoder blocks; `what` says why the method needs them."""
    if not has_blocks(model):
        raise ConfigError(
            f"{key}: {what}, which needs a language model's decoder blocks (an nn.ModuleList of blocks the hidden "
            f"states run through, fed by token ids); {type(model).__name__} has no nn.ModuleList. Methods that round "
            "each Linear on its own (rtn, llm_int8) need none"
        )


def target_linears(model: nn.Module, lm_head: bool) -> dict[str, nn.Linear]:
    """The Linears a spec quantizes, by name in model order: every nn.Linear inside the decoder blocks (in a model
    without blocks, every nn.Linear but an `lm_head`), and the output head when `lm_head`."""
    head = output_head(model)
    inside = {id(m) for m in (decoder_blocks(model) if has_blocks(model) else model).modules()} - {id(head)}
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (id(module) in inside or (lm_head and module is head))
    }


@dataclass
class Trace:
    """What one forward showed: each Linear's input producer (a norm's name, or None) in execution order."""

    order: list[str] = field(default_factory=list)  # Linears by first call
    fed_by: dict[str, str | None] = field(default_factory=dict)  # Linear -> norm whose output it reads

    def readers(self) -> dict[str, list[str]]:
        """norm name -> the Linears reading its output, in execution order."""
        result: dict[str, list[str]] = {}
        for name in self.order:
            norm = self.fed_by[name]
            if norm is not None:
                result.setdefault(norm, []).append(name)
        return result


@torch.no_grad()
def trace(model: nn.Module, idx: Tensor) -> Trace:
    """Run `model(idx)` once and record which norm (if any) produced each Linear's input."""
    produced: dict[int, tuple[str, Tensor]] = {}
    result = Trace()
    handles = []
    for name, module in model.named_modules():
        if is_norm(module):

            def keep(_m, _i, out, name=name):
                produced[id(out)] = (name, out)

            handles.append(module.register_forward_hook(keep))
        elif isinstance(module, nn.Linear):

            def see(_m, inputs, name=name):
                if name not in result.fed_by:
                    source = produced.get(id(inputs[0]))
                    fed = source[0] if source is not None and source[1] is inputs[0] else None
                    result.order.append(name)
                    result.fed_by[name] = fed

            handles.append(module.register_forward_pre_hook(see))
    try:
        model(idx)
    finally:
        for handle in handles:
            handle.remove()
    return result


class _Stop(Exception):
    """Raised by a hook to end a forward early."""


@torch.no_grad()
def block_inputs(model: nn.Module, batches: list[Tensor]) -> list[tuple[tuple, dict]]:
    """The positional and keyword arguments the first decoder block receives, per calibration batch (the
    model runs up to it only)."""
    first = decoder_blocks(model)[0]
    captured: list[tuple[tuple, dict]] = []

    def catch(_m, args, kwargs):
        captured.append((args, kwargs))
        raise _Stop

    handle = first.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for idx in batches:
            with contextlib.suppress(_Stop):
                model(idx)
    finally:
        handle.remove()
    return captured


def block_output(output: object) -> Tensor:
    """A block's hidden states from its return value (a tensor, or a tuple starting with one)."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(arguments: tuple[tuple, dict], hidden: Tensor) -> tuple[tuple, dict]:
    """A block's arguments with new hidden states (the first positional argument)."""
    args, kwargs = arguments
    if args:
        return (hidden, *args[1:]), kwargs
    return (), {**kwargs, "hidden_states": hidden}
