"""The train kind: train a model with a precision recipe; record the loss curve, the final validation loss
(nats and bits per byte), throughput, model FLOPs utilisation against the hardware's peak, peak memory and
whether the arithmetic was emulated. The checkpoint (results/train/<id>/checkpoint.pt) resumes a run that
was interrupted, and is the trained model other experiments load."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tradeoffs.bench.hardware import check_device, peaks_for
from tradeoffs.config import TrainConfig
from tradeoffs.data import load_dataset
from tradeoffs.errors import Diverged
from tradeoffs.models import count_parameters
from tradeoffs.provenance import collect_provenance
from tradeoffs.results import Metric, Outcome
from tradeoffs.train import TrainResult, state_bytes_per_parameter, train
from tradeoffs.train.distributed import launch


def _curve_metrics(result: TrainResult) -> list[Metric]:
    return [Metric("train_loss", loss, "nats", {"step": step}) for step, loss in result.train_loss] + [
        Metric("val_loss", loss, "nats", {"step": step}) for step, loss in result.val_loss
    ]


def arithmetic(config: TrainConfig) -> str:
    """How the recipe computes: emulated (fake-quantized FP32), native autocast, or plain FP32."""
    if config.recipe.emulated:
        return "emulated"
    return "fp32" if config.recipe.compute_dtype == "fp32" else f"native {config.recipe.compute_dtype} autocast"


def run(config: TrainConfig, out_dir: Path) -> Outcome:
    check_device(config.hardware)
    dataset = load_dataset(config.data)
    checkpoint = out_dir / "checkpoint.pt"
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
