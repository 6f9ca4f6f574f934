"""Reading what other experiments produced, through the job's planned inputs only (their result.json), never
from a path a config names: the trained model of a study's `source` (capture reads its tensors from it,
post-training quantization quantizes it), or the results of every experiment of a source study (the
scaling_fit kind fits laws to them)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tradeoffs.errors import ConfigError
from tradeoffs.kinds.base import Job
from tradeoffs.models import build_model
from tradeoffs.paths import results_dir
from tradeoffs.train.checkpoint import load_checkpoint
from tradeoffs.train.config import TrainConfig

CHECKPOINT = "checkpoint.pt"  # the trained model a train experiment leaves beside its result.json


@dataclass
class TrainedModel:
    """A source experiment's finished model (eval mode, on the CPU), its training config and where it came from."""

    model: nn.Module
    config: TrainConfig
    source_id: str
    checkpoint: Path


def _checked_input(path: Path | str, source_id: str) -> tuple[Path, dict]:
    """A planned input: its result.json path (inside the results directory) and record, checked to be the
    planned experiment's."""
    path = Path(path).resolve()
    results = results_dir().resolve()
    if not path.is_relative_to(results):
        raise ConfigError(f"source result {path} is outside the results directory {results}")
    if not path.is_file():
        raise ConfigError(f"source result {path} does not exist: run its experiment '{source_id}' first")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"source result {path} cannot be read: {error}") from None
    if record.get("id") != source_id:
        raise ConfigError(f"source result {path} is experiment '{record.get('id')}', not the planned '{source_id}'")
    return path, record


def source_result(job: Job, source_id: str) -> tuple[Path, dict]:
    """The planned input of a job that reads one source experiment: its result.json path (inside the results
    directory) and record, checked to be that experiment's and finished ok."""
    if len(job.inputs) != 1:
        raise ConfigError(
            f"this experiment reads one source experiment ('{source_id or 'none'}') but its job has "
            f"{len(job.inputs)} planned inputs: plan it from a suite study with `source: <study>`"
        )
    path, record = _checked_input(job.inputs[0], source_id)
    if record.get("status") != "ok":
        raise ConfigError(f"source experiment '{source_id}' ended {record.get('status')}: {record.get('message')}")
    return path, record


def source_results(job: Job, source_ids: Sequence[str]) -> list[Path]:
    """The planned inputs of a job that reads every experiment of a source study (whatever each ended with):
    their result.json paths, checked to be those experiments', in the order of `source_ids`."""
    if not source_ids or len(job.inputs) != len(source_ids):
        raise ConfigError(
            f"this experiment reads the {len(source_ids)} experiments of a source study but its job has "
            f"{len(job.inputs)} planned inputs: plan it from a suite study with `source: <study>`"
        )
    return [_checked_input(path, source_id)[0] for path, source_id in zip(job.inputs, source_ids, strict=True)]


def load_trained_model(job: Job, source: TrainConfig, source_id: str) -> TrainedModel:
    """The finished model of the train experiment `source_id` (config `source`), read from the job's input."""
    path, record = source_result(job, source_id)
    checkpoint = path.parent / CHECKPOINT
    if CHECKPOINT not in record.get("artifacts", []) or not checkpoint.is_file():
        raise ConfigError(f"source experiment '{source_id}' left no {CHECKPOINT} in {path.parent}")
    state = load_checkpoint(checkpoint)
    if state["step"] != source.steps:
        raise ConfigError(f"the checkpoint {checkpoint} is at step {state['step']} of {source.steps}")
    model = build_model(source.model)
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedModel(model, source, source_id, checkpoint)
