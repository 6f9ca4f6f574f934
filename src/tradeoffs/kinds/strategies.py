"""The strategies kind: a base GPT or small CNN scaled by a FLOPs factor s along one strategy (width, depth,
context or resolution, compound; Dollár et al. 2021, tradeoffs.models.scaling), with its counted parameters,
forward FLOPs and activations per sample (`parameters`, `flops`, `activations`, the FLOPs growth reached
`flops_factor`, each axis's size) and the measured time of one training step (forward, backward, SGD
update of a batch of `batch_size` synthetic samples) by the benchmark engine's rules (`time_median_s` and
its spread); a timing cut short by the engine's time cap makes the run `invalid`, its counts kept."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tradeoffs.bench.hardware import check_device
from tradeoffs.bench.timing import BenchConfig, measure
from tradeoffs.errors import check_choice, check_positive
from tradeoffs.kinds._timed import Recorder
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.models import ModelConfig
from tradeoffs.models.cnn import CNNConfig
from tradeoffs.models.scaling import FAST_COMPOUND_ALPHA, ScaledModel, build, family, scale, strategies, synthetic_batch
from tradeoffs.results import Metric, Outcome

BASES = ("gpt", "cnn")


@dataclass
class StrategiesConfig(ExperimentConfig):
    """One scaled model of a scaling-strategy study: the base (`model`, a GPT, or `cnn`), the strategy and the
    FLOPs factor, compound's width share `alpha`, the batch of the timed step and the timing rules."""

    kind: str = "strategies"
    base: str = "gpt"  # which base is scaled: gpt (the `model` group) | cnn (the `cnn` fields)
    model: ModelConfig = field(default_factory=ModelConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    strategy: str = "width"
    factor: float = 1.0
    alpha: float = FAST_COMPOUND_ALPHA
    batch_size: int = 8
    lr: float = 1e-3
    bench: BenchConfig = field(default_factory=BenchConfig)

    def __post_init__(self) -> None:
        check_choice("base", self.base, BASES)
        family(self.base_config)  # a GPT of another family (hf) has no scaling axes
        check_choice("strategy", self.strategy, strategies(self.base_config))
        check_positive("factor", self.factor)
        check_positive("batch_size", self.batch_size)
        check_positive("lr", self.lr)

    @property
    def base_config(self) -> ModelConfig | CNNConfig:
        """The config that is scaled."""
        return self.model if self.base == "gpt" else self.cnn


def _step(scaled: ScaledModel, config: StrategiesConfig, device: str):
    """A zero-argument training step of the scaled model on one fixed synthetic batch: forward, backward and a
    plain SGD update (torch.optim's optimizers import torch._dynamo, seconds per job for a millisecond step)."""
    model = build(scaled.config).to(device)
    inputs, targets = (t.to(device) for t in synthetic_batch(scaled.config, config.batch_size, torch.Generator()))
    parameters = list(model.parameters())

    def step() -> None:
        for parameter in parameters:
            parameter.grad = None
        _, loss = model(inputs, targets)
        loss.backward()
        with torch.no_grad():
            trained = [p for p in parameters if p.grad is not None]
            torch._foreach_add_(trained, [p.grad for p in trained], alpha=-config.lr)

    return step


def run(config: StrategiesConfig, job: Job) -> Outcome:
    device = check_device(config.hardware)
    scaled = scale(config.base_config, config.strategy, config.factor, config.alpha)
    counts = scaled.counts
    recorder = Recorder()
    recorder.timing("train_step", measure(_step(scaled, config, device), config.bench, device=device), {})
    sizes = {name: getattr(scaled.config, axis.field) for name, axis in family(scaled.config).axes.items()}
    metrics = [
        Metric("flops_factor", scaled.flops_factor),
        Metric("parameters", counts.parameters),
        Metric("total_parameters", counts.total_parameters),
        Metric("flops", counts.flops, "FLOP"),
        Metric("activations", counts.activations),
        *(Metric("axis_size", value, "", {"axis": name}) for name, value in sizes.items()),
        *recorder.metrics,
    ]
    status = "invalid" if recorder.problems else "ok"
    return Outcome(status=status, message="; ".join(recorder.problems), metrics=metrics)


KIND = Kind(StrategiesConfig, run)
