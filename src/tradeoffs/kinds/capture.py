"""The capture kind: QSNR of a format on the tensors of a trained model (every Linear's weight, input
activation and output gradient from one validation batch), per tensor and pooled per role.

Each tensor is quantized along the contraction axis of the GEMM it feeds in the forward or input-gradient
pass: weights and activations along the input features, gradients along the output features."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tradeoffs.config import CaptureConfig
from tradeoffs.data import load_dataset
from tradeoffs.errors import ConfigError
from tradeoffs.formats import fake_quant, hadamard_rotate
from tradeoffs.models import build_model
from tradeoffs.models.capture import capture_linear_tensors
from tradeoffs.numerics import quantization_error
from tradeoffs.paths import results_dir
from tradeoffs.results import Metric, Outcome

ROLES = ("weight", "activation", "gradient")


def _quantized(x: torch.Tensor, config: CaptureConfig) -> torch.Tensor:
    if config.rotation == "none":
        return fake_quant(x, config.format)
    rotated = hadamard_rotate(x, config.rotation_size)
    return hadamard_rotate(fake_quant(rotated, config.format), config.rotation_size, inverse=True)


def run(config: CaptureConfig, out_dir: Path) -> Outcome:
    checkpoint = results_dir() / config.source_id / "checkpoint.pt"
    if not config.source_id or not checkpoint.is_file():
        raise ConfigError(
            f"capture needs the checkpoint of its source train experiment ({checkpoint}); plan it from a suite "
            "study with `source: <train study>`"
        )
    train = config.source
    model = build_model(train.model)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state["step"] != train.steps:
        raise ConfigError(f"the checkpoint of {config.source_id} is at step {state['step']} of {train.steps}")
    model.load_state_dict(state["model"])
    model.eval()  # no dropout while capturing (gradients still flow)
    dataset = load_dataset(train.data)
    x, y = next(iter(dataset.eval_batches("validation", config.batch_size, train.model.context_length)))
    tensors = capture_linear_tensors(model, x, y)
    metrics, pooled = [], {role: [0.0, 0.0] for role in ROLES}
    for name, captured in tensors.items():
        for role in ROLES:
            value = getattr(captured, role)
            error = quantization_error(value, _quantized(value, config))
            signal = value.double().square().sum().item()
            pooled[role][0] += signal
            pooled[role][1] += signal * error.relative_mse
            metrics.append(Metric("qsnr_db", error.qsnr_db, "dB", {"tensor": name, "role": role}))
    for role, (signal, noise) in pooled.items():
        qsnr = 10 * math.log10(signal / noise) if noise > 0 else math.inf
        metrics.append(Metric("qsnr_db", qsnr, "dB", {"tensor": "all", "role": role}))
    metrics.append(Metric("bits_per_element", config.format.bits_per_element(train.model.d_model), "bit"))
    return Outcome(metrics=metrics)
