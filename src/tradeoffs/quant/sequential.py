"""GPTQ (or any quantizer that reads a layer's input Hessian) over a whole decoder, layer by layer: each Linear's
Hessian comes from its inputs as the model, already quantized up to it, produces them.

The first block's inputs are captured once per calibration batch; each block then runs on its cached inputs,
stage by stage (Linears reading the same input tensor, such as q|k|v or gate|up, form one stage and share
one Hessian); a stage's Linears are quantized before the next stage's inputs are collected, and the block's
outputs with all its Linears quantized become the next block's inputs. The output head, when quantized, is
calibrated last on the full quantized model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tradeoffs.quant.structure import _Stop, block_inputs, block_output, decoder_blocks, output_head, with_hidden


class HessianAccumulator:
    """Running H = 2/n X^T X over batches of a layer's inputs (rows of X are tokens), in FP32."""

    def __init__(self, features: int, device: torch.device | str = "cpu"):
        self.sum = torch.zeros(features, features, device=device)
        self.rows = 0

    def add(self, x: Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1]).float()
        self.sum.addmm_(flat.T, flat)
        self.rows += flat.shape[0]

    @property
    def hessian(self) -> Tensor:
        if not self.rows:
            raise ValueError("HessianAccumulator: no inputs were added")
        return self.sum * (2.0 / self.rows)


def hessian(x: Tensor) -> Tensor:
    """H = 2/n X^T X of inputs x (..., features), n the number of rows."""
    accumulator = HessianAccumulator(x.shape[-1], x.device)
    accumulator.add(x)
    return accumulator.hessian


def _weight_input(module: nn.Module, x: Tensor) -> Tensor:
    transform = getattr(module, "weight_input", None)
    return x if transform is None else transform(x)


@torch.no_grad()
def _stages(block: nn.Module, arguments: tuple[tuple, dict], linears: list[nn.Linear]) -> list[list[nn.Linear]]:
    """The block's Linears in execution order, grouped into runs that read the same input tensor."""
    seen: list[tuple[nn.Linear, int]] = []
    inputs: list[Tensor] = []  # kept alive so that ids stay unique during the forward
    wanted = {id(m) for m in linears}

    def record(module, args):
        if id(module) in wanted and all(module is not m for m, _ in seen):
            inputs.append(args[0])
            seen.append((module, id(args[0])))

    handles = [m.register_forward_pre_hook(record) for m in linears]
    try:
        block(*arguments[0], **arguments[1])
    finally:
        for handle in handles:
            handle.remove()
    stages: list[list[nn.Linear]] = []
    previous = None
    for module, source in seen:
        if stages and source == previous:
            stages[-1].append(module)
        else:
            stages.append([module])
        previous = source
    return stages


@torch.no_grad()
def _stage_hessian(run, stage: list[nn.Linear]) -> Tensor:
    """H of the stage's shared input over every call of `run` (which raises _Stop after the stage)."""
    accumulator = HessianAccumulator(stage[0].in_features, stage[0].weight.device)
    remaining: set[int] = set()

    def collect(module, args):
        if module is stage[0]:
            accumulator.add(_weight_input(module, args[0]))

    def finish(module, _args, _out):
        remaining.discard(id(module))
        if not remaining:
            raise _Stop

    handles = [stage[0].register_forward_pre_hook(collect)]
    handles += [m.register_forward_hook(finish) for m in stage]
    try:
        for call in run:
            remaining.update(id(m) for m in stage)
            with contextlib.suppress(_Stop):
                call()
    finally:
        for handle in handles:
            handle.remove()
    return accumulator.hessian


WeightQuantizer = Callable[[nn.Linear, Tensor], Tensor]  # (layer, input Hessian) -> its quantized weight


def _quantize_stage(stage: list[nn.Linear], h: Tensor, quantize: WeightQuantizer) -> None:
    for linear in stage:
        linear.weight.copy_(quantize(linear, h).to(linear.weight.dtype))


@torch.no_grad()
def calibrated_model(
    model: nn.Module, targets: dict[str, nn.Linear], batches: list[Tensor], quantize: WeightQuantizer
) -> None:
    """Replace each target Linear's weight by `quantize(linear, H)`, H from its inputs as the model quantized up to
    it produces them, block by block and stage by stage (module docstring), in place."""
    wanted = {id(m) for m in targets.values()}
    arguments = block_inputs(model, batches)
    for block in decoder_blocks(model):
        linears = [m for m in block.modules() if isinstance(m, nn.Linear) and id(m) in wanted]
        if linears:
            for stage in _stages(block, arguments[0], linears):
                calls = [lambda a=a, block=block: block(*a[0], **a[1]) for a in arguments]
                _quantize_stage(stage, _stage_hessian(calls, stage), quantize)
        arguments = [with_hidden(a, block_output(block(*a[0], **a[1]))) for a in arguments]
    head = output_head(model)
    if head is not None and id(head) in wanted:
        calls = [lambda idx=idx: model(idx) for idx in batches]
        _quantize_stage([head], _stage_hessian(calls, [head]), quantize)
