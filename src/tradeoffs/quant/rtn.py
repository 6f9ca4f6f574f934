"""Round-to-nearest: every operand of the spec rounded in its format with scales from its own values (weights once,
activations and the KV cache per forward). Needs no model structure: any nn.Module's Linears."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tradeoffs.formats import FormatSpec, fake_quant
from tradeoffs.quant.api import QuantizeResult, register_quantize_handler
from tradeoffs.quant.layers import make_targets_quantized
from tradeoffs.quant.spec import QuantSpec, resolve_spec


@dataclass(frozen=True)
class RTNConfig:
    """Round-to-nearest in the spec's formats."""

    spec: QuantSpec | str = "W4A16"

    def __post_init__(self) -> None:
        resolve_spec(self)


def round_weights(targets: dict[str, nn.Linear], fmt: FormatSpec) -> None:
    """Replace each Linear's weight by its round-to-nearest value in `fmt` along the input features."""
    with torch.no_grad():
        for linear in targets.values():
            linear.weight.copy_(fake_quant(linear.weight.float(), fmt, axis=-1).to(linear.weight.dtype))


@register_quantize_handler(RTNConfig)
def _quantize(
    model: nn.Module, config: RTNConfig, targets: dict[str, nn.Linear], batches: list[Tensor], result: QuantizeResult
) -> None:
    spec = config.spec
    make_targets_quantized(targets, spec.activation_format, spec.weight_format)
    round_weights(targets, spec.weight_format)
