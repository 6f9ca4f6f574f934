"""The train kind: train a model with a precision recipe; record the loss curve, the final validation loss
(nats and bits per byte), throughput, model FLOPs utilisation against the hardware's peak, peak memory and
whether the arithmetic was emulated. The checkpoint (results/train/<id>/checkpoint.pt) resumes a run that
was interrupted, and is the trained model other experiments load."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tradeoffs.bench.hardware import check_device, peaks_for
from tradeoffs.data import load_dataset
from tradeoffs.errors import Diverged
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.kinds.sources import CHECKPOINT
from tradeoffs.models import count_parameters
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


def arithmetic(config: TrainConfig) -> str:
    """How the recipe computes: emulated (fake-quantized FP32), native autocast, or plain FP32."""
    if config.recipe.emulated:
        return "emulated"
    return "fp32" if config.recipe.compute_dtype == "fp32" else f"native {config.recipe.compute_dtype} autocast"


def run(config: TrainExperimentConfig, job: Job) -> Outcome:
    check_device(config.hardware)
    dataset = load_dataset(config.data)
    out_dir = job.out_dir
    checkpoint = out_dir / CHECKPOINT
    try:
        if config.devices > 1:
            result = launch(config, out_dir, checkpoint)
        else:
            _, result = train(config, checkpoint, dataset=dataset)
    except Diverged as diverged:
        diverged.metrics = _curve_metrics(diverged.result)
        raise
    final = result.val_loss[-1][1]
    peak_dtype = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}[config.recipe.compute_dtype]
    peak = peaks_for(config.hardware, torch.get_num_threads(), collect_provenance()).tflops.get(peak_dtype, math.nan)
    if config.hardware.device == "cuda":
        peak *= config.devices  # one datasheet peak per GPU; the throughput adds up every process
    parameters = count_parameters(config.model)
    metrics = [
        *_curve_metrics(result),
        Metric("final_val_loss", final, "nats"),
        Metric("final_val_bits_per_byte", dataset.bits_per_byte(final), "bit/byte"),
        Metric("tokens_per_s", result.tokens_per_s, "token/s"),
        Metric("cold_start_step", result.cold_start_seconds, "s"),
        Metric("model_tflops_per_s", result.flops_per_s / 1e12, "TFLOP/s"),
        Metric("mfu", result.flops_per_s / 1e12 / peak if peak else math.nan, "", {"peak_dtype": peak_dtype}),
        Metric("peak_memory", result.peak_memory_bytes / 2**20, "MiB"),
        Metric("optimizer_state_bytes_per_parameter", state_bytes_per_parameter(config.recipe), "byte"),
        Metric("non_embedding_parameters", parameters.non_embedding),
        Metric("training_tokens", config.steps * config.batch_size * config.model.context_length, "token"),
        Metric("emulated", float(config.recipe.emulated), "", {"arithmetic": arithmetic(config)}),
    ]
    return Outcome(
        metrics=metrics,
        timings={"train_s": result.train_seconds},
        artifacts=[checkpoint.name],
    )


KIND = Kind(TrainExperimentConfig, run, train_resources)
