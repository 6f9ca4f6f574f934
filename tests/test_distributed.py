"""Data-parallel training through torchrun (gloo, 2 CPU processes) follows the single-process loss curve
for the same global batch."""

from __future__ import annotations

import pytest
import torch

from conftest import TRAIN_TINY as TINY
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.train import train
from tradeoffs.train.distributed import launch


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_follow_the_single_process_curve(tmp_path):
    overrides = [*TINY, "steps=8", "eval_interval=4", "log_interval=1", "batch_size=8", "lr=0.01"]
    single = train(load_experiment("train", overrides))[1]
    checkpoint = tmp_path / "checkpoint.pt"
    double = launch(load_experiment("train", [*overrides, "devices=2"]), tmp_path, checkpoint)
    assert [s for s, _ in double.train_loss] == [s for s, _ in single.train_loss]
    torch.testing.assert_close(
        torch.tensor([v for _, v in double.train_loss]),
        torch.tensor([v for _, v in single.train_loss]),
        rtol=1e-4,
        atol=1e-5,
    )
    torch.testing.assert_close(
        torch.tensor([v for _, v in double.val_loss]),
        torch.tensor([v for _, v in single.val_loss]),
        rtol=1e-4,
        atol=1e-5,
    )
    assert double.tokens == single.tokens and checkpoint.is_file()
