"""Data-parallel training with torchrun: `launch(config, out_dir)` starts `config.devices` processes through
torch.distributed.run (torchrun) on this node, each running `python -m tradeoffs.train.distributed`, which
joins the process group (gloo on CPU, NCCL on GPUs) and runs tradeoffs.train.train on its slice of every
global batch. Rank 0 writes the checkpoint and the run's TrainResult (JSON) into out_dir; the launcher reads
it back, so a caller sees the same result as from a single process.

On a SLURM cluster the job asks for `devices` CPUs or GPUs on one node (tradeoffs.resources) and this
launcher runs inside it; multi-node runs are not supported.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tradeoffs.errors import Diverged
from tradeoffs.identity import from_plain, plain
from tradeoffs.train.config import TrainConfig
from tradeoffs.train.loop import TrainResult, train

RESULT_FILE = "train_result.json"


def launch(config: TrainConfig, out_dir: Path, checkpoint: Path | None = None) -> TrainResult:
    """Run `config` in config.devices processes with torchrun and return rank 0's TrainResult. Raises
    Diverged like train() when the run diverged, and RuntimeError (with the workers' output) if they fail."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = out_dir / RESULT_FILE
    result_path.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={config.devices}",
        "-m", "tradeoffs.train.distributed", "--config", json.dumps(plain(config)), "--out", str(result_path),
        "--schema", f"{type(config).__module__}:{type(config).__qualname__}",
    ]  # fmt: skip
    if checkpoint is not None:
        command += ["--checkpoint", str(checkpoint)]
    threads = max(1, torch.get_num_threads() // config.devices)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0 or not result_path.is_file():
        raise RuntimeError(
            f"torchrun with {config.devices} processes failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    payload = json.loads(result_path.read_text())
    result = TrainResult(**payload["result"])
    result.train_loss = [tuple(p) for p in result.train_loss]
    result.val_loss = [tuple(p) for p in result.val_loss]
    if payload["diverged"]:
        error = Diverged(payload["diverged"]["message"], payload["diverged"]["step"])
        error.result = result
        raise error
    return result


def _worker(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one torchrun worker of tradeoffs.train.distributed.launch")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--schema", default="tradeoffs.train.config:TrainConfig", help="module:class of the config")
    args = parser.parse_args(argv)
    module, name = args.schema.split(":")
    config = from_plain(getattr(importlib.import_module(module), name), json.loads(args.config))
    backend = "nccl" if config.hardware.device == "cuda" else "gloo"
    torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank()
    if config.hardware.device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    diverged = None
    try:
        _, result = train(config, args.checkpoint)
    except Diverged as error:
        result, diverged = error.result, {"message": str(error), "step": error.step}
    if rank == 0:
        payload = {"result": dataclasses.asdict(result), "diverged": diverged}
        temporary = args.out.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload))
        temporary.replace(args.out)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _worker()
