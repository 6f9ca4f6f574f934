"""The train kind: train a model with a precision recipe; record the loss curve, the final validation loss
(nats and bits per byte; of the model as its recipe quantizes it), throughput, model FLOPs utilisation
against the hardware's peak, peak memory and whether the arithmetic was emulated; a diverged run keeps its
curve, its size and the step it diverged at. The checkpoint (results/train/<id>/checkpoint.pt) resumes a run that
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
from tradeoffs.train.quantized import compile_decision


@dataclass
class TrainExperimentConfig(TrainConfig, ExperimentConfig):
    """The train kind's schema: a training run (tradeoffs.train.TrainConfig) planned as an experiment."""

    kind: str = "train"


# Sizing a run's wall time: its counted FLOPs (training 6ND + attention + output head, and its evaluations) at
# an assumed effective throughput, times a margin, plus start-up. A GPU is taken at 15% of its datasheet FP32
# peak (emulated recipes compute in FP32, and models of the ladder's size keep no GPU busy): 10 TFLOP/s on an
# H100, the assumption of conf/suite/scaling.yaml's cost. A CPU thread running an fp32 recipe at 5 GFLOP/s: half
# the slowest fp32 training step measured (9.7 GFLOP/s of process CPU time, a d_model-32 GPT on a machine shared
# by eight processes; 30-49 GFLOP/s from d_model 64 on, docs/scaling.md), for CPUs without AVX-512. Emulated
# recipes and bf16/fp16 autocast at 0.5 GFLOP/s, the slowest measured: nvfp4 on gpt-200k at 3.08 s a step of
# 16 x 128 tokens on 2 threads of a loaded machine (docs/training.md); bf16 steps take 9x fp32's on AVX2 CPUs.
GPU_FP32_PEAK_SHARE = 0.15
GPU_FP32_PEAK_TFLOPS = 19.5  # a GPU whose hardware config quotes no fp32 peak (an A100's)
CPU_FP32_FLOPS_PER_THREAD = 5e9
CPU_FLOPS_PER_THREAD = 0.5e9  # emulated or reduced-precision recipes
RUNTIME_MARGIN = 2.0
START_MINUTES = 10  # interpreter, torch, data, the first checkpoint
COMPILE_MINUTES = 5  # torch.compile of a recipe's quantizers on a fresh machine (up to ~210 s measured)


def planned_flops(config: TrainConfig) -> float:
    """The counted FLOPs a run will compute: its planned training tokens at the model's training FLOPs per token
    (lm_head included), and a forward over eval_windows windows at every evaluation (the final one twice)."""
    context = config.model.context_length
    training = config.steps * config.batch_size * context * flops_per_token(config.model, include_lm_head=True)
    evaluations = config.steps // config.eval_interval + 2
    forward = flops_per_token(config.model, training=False, include_lm_head=True)
    return training + evaluations * config.eval_windows * context * forward


def effective_flops_per_s(config: TrainConfig) -> float:
    """The throughput a run's wall time is sized for (module constants): a share of each GPU's FP32 peak, or a rate
    per thread (CPU_FP32_FLOPS_PER_THREAD for fp32 recipes, CPU_FLOPS_PER_THREAD for emulated or bf16/fp16
    ones), times the data-parallel processes."""
    if config.hardware.device == "cuda":
        peak = config.hardware.peak_tflops.get("fp32", GPU_FP32_PEAK_TFLOPS) * 1e12
        return GPU_FP32_PEAK_SHARE * peak * config.devices
    plain = not config.recipe.emulated and config.recipe.compute_dtype == "fp32"
    per_thread = CPU_FP32_FLOPS_PER_THREAD if plain else CPU_FLOPS_PER_THREAD
    return per_thread * threads(config, default=config.devices)


def train_runtime_minutes(config: TrainConfig) -> int:
    """Wall-time limit of a run: RUNTIME_MARGIN x its planned FLOPs at the effective throughput, plus start-up
    and, when the run will compile its quantizers, their compilation."""
    tokens = config.steps * config.batch_size * config.model.context_length
    compiles, _ = compile_decision(config.recipe, config.compile_quant, tokens, config.recipe.compile_min_tokens)
    compute_minutes = RUNTIME_MARGIN * planned_flops(config) / effective_flops_per_s(config) / 60
    return START_MINUTES + COMPILE_MINUTES * compiles + math.ceil(compute_minutes)


def train_resources(config: TrainExperimentConfig) -> JobResources:
    """A training run is never grouped. With `devices` > 1 it launches that many data-parallel processes
    (torchrun) inside its job: one GPU each on CUDA, at least one thread each, and memory for each (2000 MB:
    torch, the model, its gradients and AdamW states, a batch; the model ladder tops out at 30M parameters).
    Wall time from the planned FLOPs (train_runtime_minutes)."""
    return JobResources(
        threads=threads(config, default=config.devices),
        mem_mb=2000 * config.devices,
        runtime=train_runtime_minutes(config),
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


def quantized_roles(config: TrainConfig) -> str:
    """The Linear roles the recipe quantizes with their formats ("weight int4, activation mxfp8"), or "none"."""
    roles = [f"{role} {spec.name}" for role, spec in config.recipe.formats().items() if role != "optimizer_state"]
    return ", ".join(roles) or "none"


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
        step = Metric("diverged_step", diverged.step, "step")
        diverged.metrics = [*_curve_metrics(diverged.result), *_size_metrics(config), step]
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
        Metric("final_eval_quantized", float(result.final_quantized), "", {"formats": quantized_roles(config)}),
    ]
    if config.recipe.emulated:
        metrics.append(Metric("final_val_loss_unquantized", result.final_unquantized_loss, "nats"))
    return Outcome(
        message=warning,
        metrics=metrics,
        timings={"train_s": result.train_seconds},
        artifacts=[checkpoint.name],
    )


KIND = Kind(TrainExperimentConfig, run, train_resources)
