"""Quantization error of low-precision optimizer states on moments recorded from a real training run: each
Adam moment of every parameter stored as the recipe stores it (tradeoffs.train.optim.quantize_state, with or
without COAT's dynamic range expansion), the error pooled over parameters per moment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from tradeoffs.errors import ConfigError
from tradeoffs.formats import FormatSpec
from tradeoffs.numerics import QuantError, quantization_error
from tradeoffs.train.checkpoint import load_checkpoint
from tradeoffs.train.optim import STATE_NAMES, quantize_state


def optimizer_state_error(
    state: Mapping[object, Mapping[str, Tensor]], spec: FormatSpec, expand: bool
) -> dict[str, QuantError]:
    """Error of every Adam moment (exp_avg, exp_avg_sq) of an optimizer's `state` (its state_dict()["state"])
    stored in `spec`, each parameter's tensor quantized on its own, pooled over parameters per moment."""
    errors = {}
    for name in STATE_NAMES:
        tensors = [moments[name] for moments in state.values() if name in moments]
        if not tensors:
            continue
        original = torch.cat([t.detach().double().flatten() for t in tensors])
        stored = torch.cat([quantize_state(t, spec, expand).double().flatten() for t in tensors])
        errors[name] = quantization_error(original, stored)
    if not errors:
        raise ConfigError(f"optimizer state: no Adam moments ({', '.join(STATE_NAMES)}) in {len(state)} entries")
    return errors


def checkpoint_state_error(checkpoint: Path, spec: FormatSpec, expand: bool) -> dict[str, QuantError]:
    """optimizer_state_error of the Adam moments saved in a training checkpoint (tradeoffs.train.train's)."""
    if not checkpoint.is_file():
        raise ConfigError(f"no training checkpoint at {checkpoint}: run its train experiment first")
    return optimizer_state_error(load_checkpoint(checkpoint)["optimizer"]["state"], spec, expand)
