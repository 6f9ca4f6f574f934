"""The fp8_activations kind: a short training run of a small GPT whose activations saved for backward are
stored in BF16 or FP8 (COAT, 2025; tradeoffs.train.fp8_activations, docs/memory.md), with Adam's moments in the
recipe's optimizer-state format (FP32, or COAT's FP8 per group of 128 with range expansion: recipe=fp8_states).

Metrics: `final_val_loss` and the `train_loss` curve (label step); the bytes one training step stores for
backward, exact: `activation_bytes` (Linear inputs and other module activations, as stored), `saved_bytes`
(those and the tensors every storage keeps as they are) and `stored_bytes` by `role`; `parameters`,
`model_state_bytes` (FP32 master + BF16 weights + BF16 gradients + the optimizer states as the recipe stores
them, per parameter) and `training_bytes` (model states + saved bytes), the end-to-end memory COAT compares.
A torch without torch.float8_e4m3fn makes an FP8 run `unsupported`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradeoffs.bench.hardware import check_device
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.resources import JobResources, gpus, threads
from tradeoffs.results import Metric, Outcome
from tradeoffs.train import state_bytes_per_parameter
from tradeoffs.train.config import TrainConfig
from tradeoffs.train.fp8_activations import ROLES, STORAGES, model_state_bytes, require_float8, train_with_storage


@dataclass
class Fp8ActivationsConfig(TrainConfig, ExperimentConfig):
    """A training run (tradeoffs.train.TrainConfig, FP32 compute) with its saved activations stored in
    `storage` (bf16 | fp8 | fp32), FP8 groups of `group_size` elements for activations other than Linear inputs."""

    kind: str = "fp8_activations"
    storage: str = "fp8"
    group_size: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("storage", self.storage, STORAGES)
        check_positive("group_size", self.group_size)
        if self.recipe.emulated or self.recipe.compute_dtype != "fp32":
            raise ConfigError(
                f"recipe: fp8_activations computes in FP32 and changes only how activations are stored; recipe "
                f"'{self.recipe.name}' quantizes Linears or autocasts (only optimizer_state_format may be set, "
                "e.g. recipe=fp8_states)"
            )
        if self.devices != 1:
            raise ConfigError(f"devices: fp8_activations trains in one process, got devices={self.devices}")


def run(config: Fp8ActivationsConfig, job: Job) -> Outcome:
    check_device(config.hardware)
    if config.storage == "fp8":
        require_float8()
    result = train_with_storage(config, config.storage, config.group_size)
    states = model_state_bytes(result.parameters, state_bytes_per_parameter(config.recipe))
    labels = {"storage": config.storage, "states": config.recipe.name}
    metrics = [
        Metric("final_val_loss", result.final_val_loss, "nats", labels),
        *(Metric("train_loss", value, "nats", {**labels, "step": step}) for step, value in result.train_loss),
        Metric("activation_bytes", result.activation_bytes, "B", labels),
        Metric("saved_bytes", result.saved_bytes, "B", labels),
        *(Metric("stored_bytes", result.bytes_by_role.get(role, 0), "B", {**labels, "role": role}) for role in ROLES),
        Metric("parameters", result.parameters, "", labels),
        Metric("model_state_bytes", states, "B", labels),
        Metric("training_bytes", states + result.saved_bytes, "B", labels),
        Metric("tokens", result.tokens, "", labels),
    ]
    return Outcome(status="ok", metrics=metrics)


def resources(config: Fp8ActivationsConfig) -> JobResources:
    """A small single-threaded training job, grouped with its kind's other jobs on a cluster."""
    return JobResources(
        threads=threads(config), mem_mb=2000, runtime=30, gpus=gpus(config), group=None if gpus(config) else config.kind
    )


KIND = Kind(Fp8ActivationsConfig, run, resources)
