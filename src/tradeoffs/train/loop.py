"""The training loop: a model, a corpus and a precision recipe in, a loss curve and throughput out.

Read it top to bottom like nanoGPT's train.py: build, (resume,) loop over steps (batch, forward under the
recipe's autocast, backward through the recipe's quantized Linears, clip, AdamW step, optimizer-state
quantization, schedule), evaluate every eval_interval steps, checkpoint. Deterministic on CPU: batches come
from a seeded generator and stochastic rounding from another, both saved in checkpoints, so a resumed run
ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from tradeoffs.data import Dataset, load_dataset
from tradeoffs.errors import ConfigError, Diverged
from tradeoffs.identity import config_hash, plain
from tradeoffs.models import build_model, flops_per_token
from tradeoffs.train.checkpoint import load_checkpoint, save_checkpoint
from tradeoffs.train.config import TrainConfig
from tradeoffs.train.optim import build_optimizer, build_scheduler, quantize_optimizer_states
from tradeoffs.train.quantized import LinearQuantizer, apply_recipe, compile_decision

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run measured; losses are mean cross-entropies in nats per token."""

    steps: int  # steps completed
    train_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) every log_interval
    val_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) every eval_interval
    tokens: int = 0  # training tokens processed (steps before a resume included, from the checkpoint)
    step_seconds: list[float] = field(default_factory=list)  # each step's time (no eval, checkpoints)
    flops_per_token: int = 0  # model FLOPs per training token (6N + attention + lm_head)
    peak_memory_bytes: int = 0
    finished: bool = False
    quant_compiled: bool = False  # the quantizers ran through torch.compile (compile_decision)
    quant_path: str = ""  # why they did or did not
    final_quantized: bool = False  # the final evaluation ran the recipe's quantized Linears (QAT and PTQ alike)
    final_unquantized_loss: float = math.nan  # emulated recipes: the final weights evaluated with quantizers off

    @property
    def train_seconds(self) -> float:
        return sum(self.step_seconds)

    @property
    def tokens_per_s(self) -> float:
        """Steady-state throughput: tokens per step over the median step time after the first fifth of the
        steps (at most 5), which hold lazy initialisation and compilation (see cold_start_seconds)."""
        return self.tokens / len(self.step_seconds) / self.median_step_seconds if self.step_seconds else math.nan

    @property
    def median_step_seconds(self) -> float:
        """The steady step: the median step time after the first fifth of the steps (at most 5)."""
        warm = self.step_seconds[min(5, len(self.step_seconds) // 5) :]
        return statistics.median(warm) if warm else math.nan

    @property
    def cold_start_seconds(self) -> float:
        """The first step's time (lazy initialisation, torch.compile of the quantizers)."""
        return self.step_seconds[0] if self.step_seconds else math.nan

    @property
    def flops_per_s(self) -> float:
        return self.tokens_per_s * self.flops_per_token


def _autocast(config: TrainConfig, device: str) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES.get(config.recipe.compute_dtype)
    return torch.autocast(device, dtype=dtype) if dtype else contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, config: TrainConfig, device: str, split: str = "validation"):
    """Mean loss (nats/token) over the first eval_windows disjoint windows of a split."""
    model.eval()
    total, count = 0.0, 0
    for x, y in dataset.eval_batches(split, config.batch_size, config.model.context_length, config.eval_windows):
        with _autocast(config, device):
            _, loss = model(x.to(device), y.to(device))
        total, count = total + loss.item() * y.numel(), count + y.numel()
    model.train()
    return total / count


def _peak_memory(device: str) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a host clock read brackets a whole step."""
    if device == "cuda":
        torch.cuda.synchronize()


def _global_mean(value: torch.Tensor, world: int) -> float:
    """The loss averaged over the processes (every process gets the same number)."""
    if world > 1:
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM)
        value = value / world
    return value.item()


def _final_evaluation(
    model: torch.nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    device: str,
    quantizer: LinearQuantizer,
    result: TrainResult,
) -> None:
    """The last point of the validation curve is the final model as its recipe quantizes it, whether QAT
    started during training or never did (quant_start_fraction 1: post-training quantization of the final
    weights by the same fake_quant); an emulated recipe's weights are also evaluated with the quantizers off."""
    if config.recipe.emulated:
        quantizer.enabled = False
        result.final_unquantized_loss = evaluate(model, dataset, config, device)
    quantizer.enabled = True
    result.final_quantized = config.recipe.emulated
    result.val_loss.append((result.steps, evaluate(model, dataset, config, device)))


def train(
    config: TrainConfig,
    checkpoint: Path | None = None,
    *,
    stop_after: int | None = None,
    dataset: Dataset | None = None,
) -> tuple[torch.nn.Module, TrainResult]:
    """Train per `config`; resume from `checkpoint` when it holds an unfinished run of the same config (a
    finished one is trained again from step 0, so a rerun measures its own run; a damaged one raises
    CheckpointError naming it), and write it at every checkpoint_interval and at the end. `stop_after` ends
    the run after that many steps, as an interruption would (for resume tests). Raises Diverged (with
    `.result`) on a NaN/inf loss or a loss spike."""
    device = "cuda" if config.hardware.device == "cuda" else "cpu"
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    if world != config.devices:
        raise ConfigError(
            f"devices={config.devices} but {world} process(es) run: launch with tradeoffs.train.distributed"
        )
    dataset = dataset or load_dataset(config.data)
    if dataset.vocab_size > config.model.vocab_size:
        raise ConfigError(
            f"data '{config.data.name}' has {dataset.vocab_size} token ids but model.vocab_size is "
            f"{config.model.vocab_size}: set model.vocab_size={dataset.vocab_size}"
        )
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    batches = torch.Generator().manual_seed(config.seed)
    rounding = torch.Generator(device=device).manual_seed(config.seed + 1 + rank)  # own noise per process
    tokens = config.steps * config.batch_size * config.model.context_length
    compiled, why = compile_decision(config.recipe, config.compile_quant, tokens, config.recipe.compile_min_tokens)
    quantizer = apply_recipe(model, config.recipe, rounding, compiled=compiled)
    module = model  # the model itself; `model` becomes its DistributedDataParallel wrapper with several processes
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(module)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    scaler = torch.amp.GradScaler(device, enabled=config.recipe.loss_scaling)
    result = TrainResult(steps=0, flops_per_token=flops_per_token(config.model, include_lm_head=True))
    result.quant_compiled, result.quant_path = compiled, why
    fingerprint = config_hash(config)
    best = math.inf  # running minimum of the training loss, for the spike test

    state = load_checkpoint(checkpoint) if checkpoint is not None and checkpoint.is_file() else None
    if state is not None and state["config_hash"] != fingerprint:
        raise ConfigError(f"checkpoint {checkpoint} belongs to another config ({state['config_hash']})")
    if state is not None and state["step"] >= config.steps:
        log.info("%s holds a finished run: training again from step 0 (a rerun measures its own run)", checkpoint)
        state = None
    if state is not None:
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        batches.set_state(state["batches"])
        torch.set_rng_state(state["torch_rng"])  # dropout draws from torch's global generator
        rounding.set_state(state["rounding"])
        result.steps, result.train_loss, result.val_loss = state["step"], state["train_loss"], state["val_loss"]
        result.step_seconds, result.tokens = state["step_seconds"], state["tokens"]
        best = state["best_loss"]

    def save() -> None:
        if checkpoint is not None and rank == 0:
            save_checkpoint(
                checkpoint,
                {
                    "config_hash": fingerprint,
                    "config": plain(config),
                    "step": result.steps,
                    "model": module.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "batches": batches.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "rounding": rounding.get_state(),
                    "train_loss": result.train_loss,
                    "val_loss": result.val_loss,
                    "best_loss": best,
                    "step_seconds": result.step_seconds,
                    "tokens": result.tokens,
                },
            )

    quant_start = config.recipe.quant_start_step(config.steps)
    model.train()
    steps = range(result.steps, config.steps if stop_after is None else min(config.steps, stop_after))
    for step in tqdm(steps, desc=f"train {config.recipe.name}", mininterval=5, disable=None):
        _synchronize(device)
        clock = time.perf_counter()
        quantizer.enabled, quantizer.step = step >= quant_start, step
        x, y = dataset.batch("train", config.batch_size, config.model.context_length, batches)
        share = config.batch_size // world  # each process takes its slice of the same global batch
        x, y = x[rank * share : (rank + 1) * share].to(device), y[rank * share : (rank + 1) * share].to(device)
        with _autocast(config, device):
            _, loss = model(x, y)
        value = _global_mean(loss.detach().clone(), world)
        if not math.isfinite(value) or (step > config.warmup_steps and value > config.spike_factor * best):
            result.train_loss.append((step, value))
            spike = f"loss {value:.3g} > {config.spike_factor} x running minimum {best:.3g}"
            reason = spike if math.isfinite(value) else f"loss is {value}"
            error = Diverged(f"training diverged: {reason}", step)
            error.result = result
            raise error
        best = min(best, value)
        scaler.scale(loss).backward()
        if config.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        quantize_optimizer_states(optimizer, config.recipe)
        scheduler.step()
        _synchronize(device)
        result.step_seconds.append(time.perf_counter() - clock)
        result.tokens += y.numel() * world
        result.steps = step + 1
        if step % config.log_interval == 0 or result.steps == config.steps:
            result.train_loss.append((step, value))
        if result.steps == config.steps:
            _final_evaluation(module, dataset, config, device, quantizer, result)
        elif result.steps % config.eval_interval == 0:
            result.val_loss.append((result.steps, evaluate(module, dataset, config, device)))
        if config.checkpoint_interval and result.steps % config.checkpoint_interval == 0:
            save()
    result.finished = result.steps == config.steps
    result.peak_memory_bytes = _peak_memory(device)
    save()
    return module, result
