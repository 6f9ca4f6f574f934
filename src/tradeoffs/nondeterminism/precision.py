"""Inference precisions of a model: every weight and activation in one dtype, or LayerCast (weights stored
in bf16 and upcast to fp32 for every operation, so all arithmetic is fp32 on bf16-rounded weights)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISIONS = (*DTYPES, "layercast")


class _Upcast(nn.Module):
    """A parametrization that hands out the stored (bf16) tensor as fp32 on every access."""

    def forward(self, stored: Tensor) -> Tensor:
        return stored.float()


def cast_model(model: nn.Module, precision: str) -> nn.Module:
    """A copy of `model` in eval mode at `precision` (one of PRECISIONS); the original is left unchanged."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    model = copy.deepcopy(model).eval()
    if precision in DTYPES:
        return model.to(DTYPES[precision])
    model.float()
    upcast = _Upcast()
    for module in list(model.modules()):
        for name, parameter in list(module.named_parameters(recurse=False)):
            if parameter.is_floating_point():
                parameter.data = parameter.data.to(torch.bfloat16)
                parametrize.register_parametrization(module, name, upcast, unsafe=True)
    return model


def storage_dtypes(model: nn.Module) -> set[torch.dtype]:
    """The dtypes the model's floating-point parameters are stored in (LayerCast: bf16 behind the upcast)."""
    return {p.dtype for p in model.parameters() if p.is_floating_point()}
