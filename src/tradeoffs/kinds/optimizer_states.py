"""The optimizer_states kind: the error of storing a trained model's Adam moments in a low-precision format
(COAT's FP8 optimizer states), with or without dynamic range expansion, measured on the moments saved in the
checkpoint of its source train experiment (tradeoffs.train.state_error)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tradeoffs.formats import FormatSpec
from tradeoffs.identity import descriptive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind, require_cpu
from tradeoffs.kinds.sources import CHECKPOINT, source_result
from tradeoffs.kinds.train import TrainExperimentConfig
from tradeoffs.results import Metric, Outcome
from tradeoffs.train.state_error import checkpoint_state_error


@dataclass
class OptimizerStatesConfig(ExperimentConfig):
    """Quantization error of a trained model's Adam moments stored in `format` (per group of its block size
    over each flattened state), with COAT's dynamic range expansion when `state_range_expansion`; `source` is
    the train experiment whose checkpoint holds the moments (set by the planner from the suite's source)."""

    kind: str = "optimizer_states"
    source: TrainExperimentConfig = field(default_factory=TrainExperimentConfig)
    source_id: str = descriptive()
    format: FormatSpec = field(default_factory=FormatSpec)
    state_range_expansion: bool = True


def run(config: OptimizerStatesConfig, job: Job) -> Outcome:
    require_cpu(config)
    path, _ = source_result(job, config.source_id)
    errors = checkpoint_state_error(path.parent / CHECKPOINT, config.format, config.state_range_expansion)
    metrics = []
    for state, error in errors.items():
        labels = {"state": state}
        metrics += [
            Metric("relative_mse", error.relative_mse, "", labels),
            Metric("qsnr_db", error.qsnr_db, "dB", labels),
            Metric("bias", error.bias, "rms", labels),
            Metric("alignment", error.alignment, "", labels),
        ]
    return Outcome(metrics=metrics)


KIND = Kind(OptimizerStatesConfig, run)
