"""Data-parallel training under a memory or communication strategy, in `processes` real processes joined by
torch.distributed (gloo on CPU, NCCL on GPUs): `run_data_parallel(config, out_dir)` launches them with torchrun
(fresh interpreters, as tradeoffs.train.distributed does) or by forking the calling process (`launcher: fork`:
the processes inherit its imported torch, so a sub-second run does not pay an interpreter per process; CPU only).

Every process trains the same GPT from the same seed on its slice of each global batch with Adam (constant
learning rate, no weight decay or clipping, so that every strategy computes the same update); strategies:
`ddp`, `zero1`, `zero2`, `zero3` (tradeoffs.train.zero) and `adam`, `onebit_adam` (tradeoffs.train.onebit_adam:
Adam with counted uncompressed all-reduces, and 1-bit Adam after `warmup_fraction` of the steps). Each process
reports the model-state bytes it holds after its last step, its peak RSS (bench.memory) and, where the strategy's
collectives are the project's own (zero2, adam, onebit_adam), the bytes it sent per step; rank 0 writes them all,
with the global loss curve, to a JSON file the launcher returns as a `DataParallelResult`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from tradeoffs.bench.memory import track_peak_memory
from tradeoffs.data import load_dataset
from tradeoffs.data.dataset import DataConfig
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.hardware import HardwareConfig
from tradeoffs.identity import descriptive, from_plain, plain
from tradeoffs.models import build_model
from tradeoffs.models.gpt import ModelConfig
from tradeoffs.train.collectives import CountingGroup
from tradeoffs.train.onebit_adam import OneBitAdam
from tradeoffs.train.zero import (
    STAGES,
    GradientPartitionedAdam,
    model_state_bytes,
    optimizer_state_tensors,
    shard_model,
)

STRATEGIES = (*STAGES, "adam", "onebit_adam")
COUNTED = ("zero2", "adam", "onebit_adam")  # strategies whose collectives go through CountingGroup
LAUNCHERS = ("torchrun", "fork")
RESULT_FILE = "data_parallel_result.json"


@dataclass
class DataParallelConfig:
    """A data-parallel training run of `strategy` on `processes` processes (module docstring)."""

    seed: int = 0
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    strategy: str = "ddp"
    processes: int = 2
    steps: int = 20
    batch_size: int = 8  # global: each process takes batch_size / processes sequences
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_fraction: float = 0.15  # onebit_adam: uncompressed Adam steps, as a share of the run
    eval_windows: int = 16
    launcher: str = descriptive("torchrun")  # how the processes start: same result either way, not hashed

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("launcher", self.launcher, LAUNCHERS)
        for key in ("processes", "steps", "batch_size", "lr", "eval_windows"):
            check_positive(key, getattr(self, key))
        if self.batch_size % self.processes:
            raise ConfigError(f"processes={self.processes} must divide batch_size={self.batch_size}")
        if not 0 < self.warmup_fraction <= 1:
            raise ConfigError(f"warmup_fraction: must be in (0, 1] (1: never compress), got {self.warmup_fraction}")
        if self.launcher == "fork" and self.hardware.device == "cuda":
            raise ConfigError("launcher=fork: a forked process cannot use CUDA; use launcher=torchrun on a GPU")

    @property
    def warmup_steps(self) -> int:
        """onebit_adam's uncompressed steps (at least one: the variance needs a gradient)."""
        return max(1, round(self.warmup_fraction * self.steps))


@dataclass
class DataParallelResult:
    """What a data-parallel run measured: the global training loss per step, the final validation loss, and per
    process (rank order) its model-state bytes, peak RSS and bytes sent per step (empty when not counted)."""

    train_loss: list[float]
    val_loss: float
    parameters: int  # Psi: the model's parameter count
    ranks: list[dict]
    bytes_sent: list[list[float]] = field(default_factory=list)
    train_seconds: float = 0.0


def _build(config: DataParallelConfig, model: torch.nn.Module, group: CountingGroup):
    """The (module to call, optimizer) of the strategy."""
    adam = {"lr": config.lr, "betas": (config.beta1, config.beta2), "eps": config.eps}
    if config.strategy in ("ddp", "zero1"):
        wrapped = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
        if config.strategy == "ddp":
            return wrapped, torch.optim.Adam(model.parameters(), **adam)
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return wrapped, ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, **adam)
    if config.strategy == "zero2":
        return model, GradientPartitionedAdam(model, group, **adam)
    if config.strategy == "zero3":
        sharded = shard_model(model)
        return sharded, torch.optim.Adam(sharded.parameters(), **adam)
    steps = config.steps if config.strategy == "adam" else config.warmup_steps
    return model, OneBitAdam(model.parameters(), group, warmup_steps=steps, **adam)


def _held(config: DataParallelConfig, model: torch.nn.Module, optimizer) -> dict[str, int]:
    """The model-state bytes this process holds now."""
    parameters = list(model.parameters())
    if config.strategy == "zero2":
        gradients, states = optimizer.gradients, optimizer_state_tensors(optimizer)
    elif config.strategy in ("adam", "onebit_adam"):
        gradients, states = [p.grad for p in parameters if p.grad is not None], optimizer.state_tensors
    else:
        gradients, states = [p.grad for p in parameters if p.grad is not None], optimizer_state_tensors(optimizer)
    held = model_state_bytes(parameters, gradients, states)
    return {"parameter_bytes": held.parameters, "gradient_bytes": held.gradients, "state_bytes": held.optimizer_states}


def train_rank(config: DataParallelConfig) -> DataParallelResult | None:
    """Run this process's part of the run inside an initialised process group; rank 0 returns the result."""
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != config.processes:
        raise ConfigError(f"processes={config.processes} but {world} process(es) joined the group")
    dataset = load_dataset(config.data)
    group = CountingGroup.current()
    device = "cuda" if config.hardware.device == "cuda" else "cpu"
    with track_peak_memory(device) as memory:
        torch.manual_seed(config.seed)
        model = build_model(config.model).to(device)
        psi = sum(p.numel() for p in model.parameters())
        module, optimizer = _build(config, model, group)
        batches = torch.Generator().manual_seed(config.seed)
        share, losses = config.batch_size // world, []
        clock = time.perf_counter()
        for step in range(config.steps):
            x, y = dataset.batch("train", config.batch_size, config.model.context_length, batches)
            x, y = x[rank * share : (rank + 1) * share].to(device), y[rank * share : (rank + 1) * share].to(device)
            _, loss = module(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = loss.detach().clone()
            dist.all_reduce(value)
            losses.append(value.item() / world)
            if step + 1 < config.steps:
                group.next_step()
        seconds = time.perf_counter() - clock
        held = _held(config, model, optimizer)
        val = _evaluate(module, dataset, config)
    held |= {"rank": rank, "rss_peak_bytes": memory.rss_peak, "rss_growth_bytes": memory.rss_growth}
    if device == "cuda":
        held |= {"cuda_peak_bytes": memory.cuda_peak, "cuda_growth_bytes": memory.cuda_growth}
    counted = group.steps if config.strategy in COUNTED else []
    gathered: list = [None] * world
    dist.all_gather_object(gathered, (held, counted))
    if rank:
        return None
    return DataParallelResult(
        train_loss=losses,
        val_loss=val,
        parameters=psi,
        ranks=[g[0] for g in gathered],
        bytes_sent=[g[1] for g in gathered if g[1]],
        train_seconds=seconds,
    )


@torch.no_grad()
def _evaluate(module: torch.nn.Module, dataset, config: DataParallelConfig) -> float:
    """Mean validation loss over eval_windows windows, computed by every process (a sharded model's forward
    needs them all)."""
    total, count = 0.0, 0
    for x, y in dataset.eval_batches("validation", config.batch_size, config.model.context_length, config.eval_windows):
        device = next(module.parameters()).device
        _, loss = module(x.to(device), y.to(device))
        total, count = total + loss.item() * y.numel(), count + y.numel()
    return total / count


def _write(result: DataParallelResult | None, out: Path) -> None:
    if result is not None:
        temporary = out.with_suffix(".tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(result)))
        temporary.replace(out)


def _forked(config: DataParallelConfig, rank: int, store: Path, out: Path, threads: int) -> None:
    """Body of a forked process: join the group through a file store, train, report failures on stderr."""
    try:
        torch.set_num_threads(threads)
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=config.processes)
        try:
            _write(train_rank(config), out)
        finally:
            dist.destroy_process_group()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _preload() -> None:
    """Import what every strategy imports on first use (DDP and Adam import torch._dynamo: seconds), so that
    forked processes inherit it instead of each importing it again."""
    import torch._dynamo
    import torch.distributed.fsdp
    import torch.distributed.optim  # noqa: F401


def _join_failing_fast(processes: list) -> None:
    """Wait for the forked processes; when one fails, stop the others (they would wait for it in a collective)."""
    running = list(processes)
    while running:
        multiprocessing.connection.wait([p.sentinel for p in running])
        running = [p for p in running if p.exitcode is None]
        if any(p.exitcode for p in processes):
            for process in running:
                process.terminate()
            for process in running:
                process.join()
            return


def run_data_parallel(config: DataParallelConfig, out_dir: Path) -> DataParallelResult:
    """Run `config` in config.processes processes and return rank 0's result; RuntimeError (with the processes'
    output) if they fail."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / RESULT_FILE
    out.unlink(missing_ok=True)
    threads = max(1, torch.get_num_threads() // config.processes)
    if config.launcher == "fork":
        _preload()
        store = (out_dir / "process_group_store").resolve()  # file:// takes an absolute path (a relative one's
        # first component would be read as the URL's host, and every process would wait for a file it cannot make)
        store.unlink(missing_ok=True)
        context = multiprocessing.get_context("fork")
        processes = [
            context.Process(target=_forked, args=(config, rank, store, out, threads))
            for rank in range(config.processes)
        ]
        for process in processes:
            process.start()
        _join_failing_fast(processes)
        store.unlink(missing_ok=True)
        codes = [p.exitcode for p in processes]
        failed, detail = any(codes) or not out.is_file(), f"exit codes {codes} (tracebacks above, on stderr)"
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={config.processes}",
            "-m", "tradeoffs.train.data_parallel", "--config", json.dumps(plain(config)), "--out", str(out),
        ]  # fmt: skip
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, capture_output=True, text=True, env=environment)
        failed, detail = done.returncode != 0 or not out.is_file(), done.stderr[-4000:]
    if failed:
        raise RuntimeError(f"{config.strategy} on {config.processes} processes ({config.launcher}) failed: {detail}")
    return DataParallelResult(**json.loads(out.read_text()))


def _worker(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one torchrun process of tradeoffs.train.data_parallel")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = from_plain(DataParallelConfig, json.loads(args.config))
    cuda = config.hardware.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    try:
        _write(train_rank(config), args.out)
    finally:
        dist.destroy_process_group()


def ideal_compressed_step_bytes(parameters: int, processes: int) -> float:
    """Bytes one process sends in a compression step of 1-bit Adam (module docstring of onebit_adam): the packed
    signs of the padded momentum twice at (N-1)/N plus the N - 1 scales of each all-gather."""
    padded = math.ceil(parameters / (8 * processes)) * 8 * processes
    return 2 * (processes - 1) / processes * padded / 8 + 2 * (processes - 1) * 4


if __name__ == "__main__":
    _worker()
