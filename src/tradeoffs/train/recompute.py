"""Full activation recomputation per transformer block (Megatron-LM; Korthikanti et al. 2022), and the FLOP
counts that separate model FLOPs utilisation (MFU) from hardware FLOPs utilisation (HFU).

`recompute_blocks(model)` runs every block of a GPT through `torch.utils.checkpoint`: its forward runs without
saving anything but the block's input, and the backward runs the block's forward again first. The reentrant
variant is used because it keeps the block's input with `save_for_backward`, where
`tradeoffs.bench.saved.count_saved` sees it (the non-reentrant variant keeps it in a closure, out of sight of
saved-tensor hooks), so the stored bytes are counted exactly either way of running.

Model FLOPs are what the model needs per token whatever the implementation: 3 forwards (forward, and a
backward of twice the forward's FLOPs). Hardware FLOPs add what recomputation repeats: one more forward of
every recomputed block (the embeddings and the output head are not recomputed), so with every block
recomputed they are about 4 forwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from tradeoffs.bench.memory import track_peak_memory
from tradeoffs.bench.saved import count_saved
from tradeoffs.bench.timing import BenchConfig, measure
from tradeoffs.models.counting import flops_breakdown, flops_per_token
from tradeoffs.models.gpt import GPT, ModelConfig


@contextlib.contextmanager
def recompute_blocks(model: GPT, enabled: bool = True) -> Iterator[GPT]:
    """Inside the block, every transformer block of `model` recomputes its forward in the backward
    (torch.utils.checkpoint per block) while the model is training; nothing changes when `enabled` is False."""
    if not enabled:
        yield model
        return
    originals = []
    for block in model.blocks:
        forward = block.forward

        def checkpointed(x: Tensor, cache=None, layer: int = 0, forward=forward) -> Tensor:
            if cache is not None or not x.requires_grad or not model.training:
                return forward(x, cache, layer)
            return checkpoint(forward, x, use_reentrant=True)

        originals.append(block)
        block.forward = checkpointed
    try:
        yield model
    finally:
        for block in originals:
            del block.forward  # the instance attribute; the class's forward shows through again


def block_flops_per_token(config: ModelConfig, context_length: int | None = None) -> int:
    """Forward FLOPs per token of the transformer blocks alone (dense layers and attention, no lm_head)."""
    terms = flops_breakdown(config, context_length)
    return terms["dense"] + terms["attention"]


def model_flops_per_token(config: ModelConfig, context_length: int | None = None) -> int:
    """Model FLOPs per training token: 3 forwards, output head included (what MFU counts)."""
    return flops_per_token(config, training=True, include_lm_head=True, context_length=context_length)


def hardware_flops_per_token(config: ModelConfig, recompute: bool, context_length: int | None = None) -> int:
    """FLOPs the hardware runs per training token: the model FLOPs plus, with per-block recomputation, one more
    forward of every block (what HFU counts)."""
    extra = block_flops_per_token(config, context_length) if recompute else 0
    return model_flops_per_token(config, context_length) + extra


def utilisation(flops_per_token: float, tokens_per_s: float, peak_tflops: float) -> float:
    """FLOP/s achieved over the peak: flops_per_token x tokens/s / (peak TFLOP/s x 1e12)."""
    return flops_per_token * tokens_per_s / (peak_tflops * 1e12)


@dataclass
class RecomputeCase:
    """One training step's stored activations (exact), measured peak and time, with or without recomputation."""

    recompute: bool
    saved_bytes: int
    saved_tensors: int
    peak_bytes: float
    peak_source: str
    peak_reset: bool
    timing: dict
    samples_s: list[float]


def measure_recompute(
    config: ModelConfig, batch_size: int, recompute: bool, bench: BenchConfig, device: str = "cpu", seed: int = 0
) -> RecomputeCase:
    """Forward + backward of a GPT on one random batch of full-context sequences, with or without per-block
    recomputation: the bytes saved for backward (parameters left out), the measured peak of one step (run it in a
    fresh fork on a CPU) and the step's time by the benchmark engine's rules."""
    torch.manual_seed(seed)
    model = GPT(config).to(device).train()
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, config.vocab_size, (batch_size, config.context_length + 1), generator=generator)
    inputs, targets = tokens[:, :-1].to(device), tokens[:, 1:].to(device)
    parameters = list(model.parameters())

    def step() -> None:
        for parameter in parameters:
            parameter.grad = None
        model(inputs, targets)[1].backward()

    with recompute_blocks(model, recompute):
        with count_saved(exclude=parameters) as saved:
            _, loss = model(inputs, targets)
        loss.backward()
        del loss
        with track_peak_memory(device) as memory:
            step()
        measurement = measure(step, bench, device=device)
    if device == "cuda":
        peak, source = float(memory.cuda_growth), "cuda allocator peak"
    else:
        peak, source = math.nan if memory.rss_growth is None else float(memory.rss_growth), "RSS high-water mark"
    return RecomputeCase(
        recompute,
        saved.bytes,
        saved.tensors,
        peak,
        source,
        memory.rss_peak_reset,
        measurement.summary(),
        measurement.samples_s,
    )
