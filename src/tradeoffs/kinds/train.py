"""The train kind: train a model with a precision recipe; record the loss curve, the final validation loss
(nats and bits per byte), throughput, model FLOPs utilisation against the hardware's peak, peak memory and
whether the arithmetic was emulated. The checkpoint (results/train/<id>/checkpoint.pt) resumes a run that
was interrupted, and is the trained model other experiments load."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tradeoffs.bench.hardware import check_device, peaks_for
from tradeoffs.data import Dataset, load_dataset
from tradeoffs.errors import ConfigError, Diverged
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.kinds.sources import CHECKPOINT
from tradeoffs.models import count_parameters, flops_per_token
from tradeoffs.provenance import collect_provenance
from tradeoffs.resources import JobResources, gpus, threads
from tradeoffs.results import Metric, Outcome
from tradeoffs.train import TrainResult, state_bytes_per_parameter, train
from tradeoffs.train.config import TrainConfig
from tradeoffs.train.distributed import launch


@dataclass
class TrainExperimentConfig(TrainConfig, ExperimentConfig):
    """The train kind's schema: a training run (tradeoffs.train.TrainConfig) planned as an experiment."""

    kind: str = "train"


def train_resources(config: TrainExperimentConfig) -> JobResources:
    """A training run is never grouped. With `devices` > 1 it launches that many data-parallel processes
    (torchrun) inside its job: one GPU each on CUDA, at least one thread each, and memory for each (2000 MB:
    torch, the model, its gradients and AdamW states, a batch; the model ladder tops out at 30M parameters).
    An hour of wall time until runs get longer."""
    return JobResources(
        threads=threads(config, default=config.devices),
        mem_mb=2000 * config.devices,
        runtime=60,
        gpus=gpus(config) * config.devices,
        group=None,
    )


def _curve_metrics(result: TrainResult) -> list[Metric]:
    return [Metric("train_loss", loss, "nats", {"step": step}) for step, loss in result.train_loss] + [
        Metric("val_loss", loss, "nats", {"step": step}) for step, loss in result.val_loss
    ]


def _size_metrics(config: TrainConfig) -> list[Metric]:
    """The run's N (non-embedding and total parameters), D (planned training tokens) and compute C = D times
    the training FLOPs per token (6N + attention), which the scaling fits read; a diverged run keeps them."""
    parameters = count_parameters(config.model)
    tokens = config.steps * config.batch_size * config.model.context_length
    return [
        Metric("non_embedding_parameters", parameters.non_embedding),
        Metric("total_parameters", parameters.total),
        Metric("training_tokens", tokens, "token"),
        Metric("training_compute", tokens * flops_per_token(config.model), "FLOP", {"rule": "6ND + attention"}),
    ]


def arithmetic(config: TrainConfig) -> str:
    """How the recipe computes: emulated (fake-quantized FP32), native autocast, or plain FP32."""
    if config.recipe.emulated:
        return "emulated"
    return "fp32" if config.recipe.compute_dtype == "fp32" else f"native {config.recipe.compute_dtype} autocast"


def check_splits(config: TrainConfig, dataset: Dataset) -> str:
    """Refuse a corpus whose train or validation split holds no window of context_length + 1 tokens, naming the
    data keys that sized it; return a warning when eval_windows asks for more windows than the split has."""
    need, data = config.model.context_length + 1, config.data
    for split in ("train", "validation"):
        if len(dataset.splits[split]) < need:
            raise ConfigError(
                f"data.max_bytes={data.max_bytes}, data.validation_fraction={data.validation_fraction}: the {split} "
                f"split of {dataset.name} has {len(dataset.splits[split])} tokens, fewer than model.context_length "
                f"+ 1 = {need}; raise data.max_bytes (0: the whole corpus) or the split's fraction"
            )
    windows = (len(dataset.splits["validation"]) - 1) // config.model.context_length
    if config.eval_windows > windows:
        return f"warning: eval_windows={config.eval_windows} capped at the {windows} windows of the validation split"
    return ""


def run(config: TrainExperimentConfig, job: Job) -> Outcome:
    check_device(config.hardware)
    dataset = load_dataset(config.data)
    warning = check_splits(config, dataset)
    out_dir = job.out_dir
    checkpoint = out_dir / CHECKPOINT
    try:
        if config.devices > 1:
            result = launch(config, out_dir, checkpoint)
        else:
            _, result = train(config, checkpoint, dataset=dataset)
    except Diverged as diverged:
        diverged.metrics = _curve_metrics(diverged.result) + _size_metrics(config)
        raise
    final = result.val_loss[-1][1]
    peak_dtype = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}[config.recipe.compute_dtype]
    peak = peaks_for(config.hardware, torch.get_num_threads(), collect_provenance()).tflops.get(peak_dtype, math.nan)
    if config.hardware.device == "cuda":
        peak *= config.devices  # one datasheet peak per GPU; the throughput adds up every process
    metrics = [
        *_curve_metrics(result),
        Metric("final_val_loss", final, "nats"),
        Metric("final_val_bits_per_byte", dataset.bits_per_byte(final), "bit/byte"),
        Metric("tokens_per_s", result.tokens_per_s, "token/s"),
        Metric("cold_start_step", result.cold_start_seconds, "s"),
        Metric("step_time_median_s", result.median_step_seconds, "s"),
        Metric("quant_compiled", float(result.quant_compiled), "", {"reason": result.quant_path}),
        Metric("model_tflops_per_s", result.flops_per_s / 1e12, "TFLOP/s"),
        Metric("mfu", result.flops_per_s / 1e12 / peak if peak else math.nan, "", {"peak_dtype": peak_dtype}),
        Metric("peak_memory", result.peak_memory_bytes / 2**20, "MiB"),
        Metric("optimizer_state_bytes_per_parameter", state_bytes_per_parameter(config.recipe), "byte"),
        *_size_metrics(config),
        Metric("emulated", float(config.recipe.emulated), "", {"arithmetic": arithmetic(config)}),
    ]
    return Outcome(
        message=warning,
        metrics=metrics,
        timings={"train_s": result.train_seconds},
        artifacts=[checkpoint.name],
    )


KIND = Kind(TrainExperimentConfig, run, train_resources)
