"""The capture kind: QSNR of a format on the tensors of a trained model (every Linear's weight, input
activation and output gradient from one validation batch), per tensor and pooled per role.

Each tensor is quantized along the contraction axis of the GEMM it feeds in the forward or input-gradient
pass: weights and activations along the input features, gradients along the output features."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tradeoffs.data import load_dataset
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.formats import FormatSpec, fake_quant, hadamard_rotate, is_power_of_two
from tradeoffs.identity import descriptive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind, require_cpu
from tradeoffs.kinds.sources import load_trained_model
from tradeoffs.kinds.train import TrainExperimentConfig
from tradeoffs.models.capture import capture_linear_tensors
from tradeoffs.numerics import quantization_error
from tradeoffs.numerics.error import qsnr_db
from tradeoffs.results import Metric, Outcome

ROLES = ("weight", "activation", "gradient")


@dataclass
class CaptureConfig(ExperimentConfig):
    """QSNR of a format on the tensors of a trained model (the capture kind): the weights, inputs
    (activations) and output gradients of every Linear, from one validation batch through the checkpoint of
    its `source` train experiment (set by the planner from the suite's source study)."""

    kind: str = "capture"
    source: TrainExperimentConfig = field(default_factory=TrainExperimentConfig)
    source_id: str = descriptive()  # the train experiment whose checkpoint is read (its config is `source`)
    format: FormatSpec = field(default_factory=FormatSpec)
    rotation: str = "none"  # none | hadamard: blockwise along the quantization axis before quantizing
    rotation_size: int = 32
    batch_size: int = 8

    def __post_init__(self) -> None:
        check_choice("rotation", self.rotation, ("none", "hadamard"))
        check_positive("batch_size", self.batch_size)
        if self.rotation_size < 2 or not is_power_of_two(self.rotation_size):
            raise ConfigError(f"rotation_size must be a power of two >= 2, got {self.rotation_size}")


def _quantized(x: torch.Tensor, config: CaptureConfig) -> torch.Tensor:
    if config.rotation == "none":
        return fake_quant(x, config.format)
    rotated = hadamard_rotate(x, config.rotation_size)
    return hadamard_rotate(fake_quant(rotated, config.format), config.rotation_size, inverse=True)


def run(config: CaptureConfig, job: Job) -> Outcome:
    require_cpu(config)
    train = config.source
    model = load_trained_model(job, train, config.source_id).model
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
        metrics.append(Metric("qsnr_db", qsnr_db(signal, noise), "dB", {"tensor": "all", "role": role}))
    metrics.append(Metric("bits_per_element", config.format.bits_per_element(train.model.d_model), "bit"))
    return Outcome(metrics=metrics)


KIND = Kind(CaptureConfig, run)
