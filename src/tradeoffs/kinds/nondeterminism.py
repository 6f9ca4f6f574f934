"""The nondeterminism kind: greedy decoding of a trained model's evaluation prompts under a reference reduction
order and perturbed ones (batch size and composition, split-K, CPU threads, attention kernel, CUDA BLAS
library), per precision, compared token by token with the reference (tradeoffs.nondeterminism; the metric rows,
labelled by precision and perturbation, are those of docs/nondeterminism.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tradeoffs.bench.hardware import check_device
from tradeoffs.data import load_dataset
from tradeoffs.errors import ConfigError
from tradeoffs.identity import descriptive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.kinds.sources import load_trained_model
from tradeoffs.kinds.train import TrainExperimentConfig
from tradeoffs.nondeterminism import NondeterminismConfig, prompt_windows, run_study
from tradeoffs.resources import JobResources, default_resources
from tradeoffs.results import Metric, Outcome


@dataclass
class NondeterminismExperimentConfig(NondeterminismConfig, ExperimentConfig):
    """The nondeterminism kind's schema: the study (tradeoffs.nondeterminism.NondeterminismConfig) planned as an
    experiment on the checkpoint of its `source` train experiment (set by the planner from the suite's source
    study), its prompts drawn from the source's corpus. `device` is the hardware's."""

    kind: str = "nondeterminism"
    source: TrainExperimentConfig = field(default_factory=TrainExperimentConfig)
    source_id: str = descriptive()  # the train experiment whose checkpoint is read (its config is `source`)

    def __post_init__(self) -> None:
        if self.device != self.hardware.device:
            raise ConfigError(
                f"device: '{self.device}' differs from hardware.device '{self.hardware.device}' "
                f"(hardware={self.hardware.name}); pick a hardware entry of that device instead"
            )
        super().__post_init__()


def run(config: NondeterminismExperimentConfig, job: Job) -> Outcome:
    check_device(config.hardware)
    model = load_trained_model(job, config.source, config.source_id).model
    tokens = load_dataset(config.source.data).splits[config.split]
    prompts = prompt_windows(tokens, config.prompts, config.prompt_length, config.seed)
    result = run_study(model, prompts, config)
    skipped = "; ".join(dict.fromkeys(f"{s.perturbation} skipped: {s.reason}" for s in result.skipped))
    return Outcome(message=skipped, metrics=[Metric(*row) for row in result.metric_rows()], timings=result.timings())


def resources(config: NondeterminismExperimentConfig) -> JobResources:
    """A small job with as many threads as its most threaded reduction order uses (`threads=2` runs two)."""
    orders = [config.reference_order, *(order for _, order in config.perturbation_orders)]
    planned = default_resources(config)
    return replace(planned, threads=max(planned.threads, *(order.threads for order in orders)))


KIND = Kind(NondeterminismExperimentConfig, run, resources)
