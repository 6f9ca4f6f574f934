"""Training: the loop (loop.py), emulated low-precision Linears for precision recipes (quantized.py), and
AdamW with its schedule and low-precision optimizer states (optim.py). See docs/training.md."""

from tradeoffs.train.loop import TrainResult, evaluate, train
from tradeoffs.train.optim import build_optimizer, lr_factor, quantize_state, state_bytes_per_parameter
from tradeoffs.train.quantized import LinearQuantizer, QuantLinear, apply_recipe

__all__ = [
    "LinearQuantizer",
    "QuantLinear",
    "TrainResult",
    "apply_recipe",
    "build_optimizer",
    "evaluate",
    "lr_factor",
    "quantize_state",
    "state_bytes_per_parameter",
    "train",
]
