"""The training-loop benchmark (`python -m tradeoffs bench train`): tokens/s of the project's loop against a
minimal hand-written loop (model, AdamW, forward, backward, step: nothing else) on the same model and
batches, and each precision recipe's step time relative to fp32, measured side by side in one process.

Both loops draw the same random batches from the same corpus and time steps only (the project's loop
excludes its evaluations); each figure is a median step time after warm-up steps (which hold lazy
initialisation and torch.compile of the quantizers), and the loops alternate in rounds so drift on a
shared machine affects both.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from tradeoffs.config import TrainConfig, load_experiment
from tradeoffs.data import Dataset, load_dataset
from tradeoffs.models import build_model
from tradeoffs.train.loop import AUTOCAST_DTYPES, train

REFERENCE_TARGET, EMULATION_TARGET = 0.95, 2.0  # issue #4: >= 0.95x the reference; FP8/MXFP8 <= 2x fp32


def reference_step_seconds(config: TrainConfig, dataset: Dataset, steps: int) -> list[float]:
    """Step times of the minimal loop: the same model, optimizer settings, batches and autocast."""
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
    generator = torch.Generator().manual_seed(config.seed)
    dtype = AUTOCAST_DTYPES.get(config.recipe.compute_dtype)
    times = []
    for _ in range(steps):
        clock = time.perf_counter()
        x, y = dataset.batch("train", config.batch_size, config.model.context_length, generator)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - clock)
    return times


def project_step_seconds(config: TrainConfig, dataset: Dataset) -> list[float]:
    """Step times of tradeoffs.train.train for `config` (evaluation and checkpoints are outside them)."""
    return train(config, dataset=dataset)[1].step_seconds


@dataclass
class LoopComparison:
    recipe: str
    reference_s: float  # median step time of the minimal loop (reference recipes only)
    project_s: float  # median step time of the project's loop

    @property
    def ratio(self) -> float:
        """Project throughput / reference throughput."""
        return self.reference_s / self.project_s


def _median_after_warmup(times: list[float], warmup: int) -> float:
    return statistics.median(times[warmup:])


def compare(
    overrides: list[str], recipes: list[str], steps: int, warmup: int, rounds: int
) -> tuple[list[LoopComparison], dict[str, float]]:
    """Loop ratios for fp32/bf16 (project vs minimal loop) and every recipe's median step time, in rounds."""
    dataset = load_dataset(load_experiment("train", overrides).data)
    step_times: dict[str, list[float]] = {}
    references: dict[str, list[float]] = {}
    for _ in range(rounds):
        for recipe in recipes:
            config = load_experiment(
                "train", [*overrides, f"recipe={recipe}", f"steps={steps + warmup}", f"eval_interval={10**6}"]
            )
            if recipe in ("fp32", "bf16"):
                references.setdefault(recipe, []).append(
                    _median_after_warmup(reference_step_seconds(config, dataset, steps + warmup), warmup)
                )
            step_times.setdefault(recipe, []).append(
                _median_after_warmup(project_step_seconds(config, dataset), warmup)
            )
    medians = {recipe: statistics.median(times) for recipe, times in step_times.items()}
    loops = [LoopComparison(r, statistics.median(references[r]), medians[r]) for r in references]
    return loops, medians
