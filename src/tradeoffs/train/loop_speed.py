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
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tradeoffs.bench.targets import target
from tradeoffs.data import Dataset, load_dataset
from tradeoffs.models import build_model
from tradeoffs.train.config import TrainConfig
from tradeoffs.train.loop import AUTOCAST_DTYPES, train

# Builds the TrainConfig of a list of `key=value` overrides of the train kind (the command line composes them).
Configure = Callable[[list[str]], TrainConfig]


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
    configure: Configure, overrides: list[str], recipes: list[str], steps: int, warmup: int, rounds: int
) -> tuple[list[LoopComparison], dict[str, float]]:
    """Loop ratios for fp32/bf16 (project vs minimal loop) and every recipe's median step time, in rounds."""
    dataset = load_dataset(configure(overrides).data)
    step_times: dict[str, list[float]] = {}
    references: dict[str, list[float]] = {}
    for _ in range(rounds):
        for recipe in recipes:
            config = configure([*overrides, f"recipe={recipe}", f"steps={steps + warmup}", f"eval_interval={10**6}"])
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


def main(configure: Configure, argv: list[str] | None = None) -> None:
    """`python -m tradeoffs bench train`: print the loop ratio of fp32 and bf16 and each recipe's step time
    relative to fp32, each against its target (tradeoffs.bench.targets)."""
    import argparse

    parser = argparse.ArgumentParser(prog="tradeoffs bench train", description=__doc__)
    parser.add_argument("--model", default="gpt-200k", help="conf/model option (default gpt-200k)")
    parser.add_argument("--context", type=int, default=128, help="context length (tokens)")
    parser.add_argument("--batch", type=int, default=16, help="global batch (sequences)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop and round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps (compilation, allocator)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--recipes", nargs="+", default=["fp32", "bf16", "fp8", "mxfp8", "mxfp4", "nvfp4"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--eager", action="store_true", help="emulated recipes without torch.compile")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = [f"model={args.model}", f"model.context_length={args.context}", f"batch_size={args.batch}"]
    overrides += ["compile_quant=false"] if args.eager else ["recipe.compile_min_tokens=0"]  # else always compiled
    loops, medians = compare(configure, overrides, args.recipes, args.steps, args.warmup, args.rounds)
    print(
        f"training loop benchmark: {args.model}, {args.batch} x {args.context} tokens per step, "
        f"{args.threads} threads, {args.rounds} rounds of {args.steps} timed steps (after {args.warmup})"
    )
    loop_target, emulation_target = target("train_loop_vs_minimal"), target("emulated_step_vs_fp32")
    for loop in loops:
        print(
            f"  {loop.recipe:>6}: project loop {1 / loop.project_s:7.2f} steps/s, minimal loop "
            f"{1 / loop.reference_s:7.2f} steps/s, ratio {loop.ratio:.3f} ({loop_target.verdict(loop.ratio)})"
        )
    for recipe, seconds in medians.items():
        relative = seconds / medians["fp32"] if "fp32" in medians else float("nan")
        print(
            f"  {recipe:>6}: {seconds * 1e3:8.1f} ms/step, {relative:5.2f}x fp32"
            + (f" ({emulation_target.verdict(relative)})" if recipe in emulation_target.applies_to else "")
        )
