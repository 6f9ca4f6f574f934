"""The inference benchmark: greedy generation of a fixed number of new tokens with the project's GPT
(tradeoffs.models), prefill and decode timed separately through the engine's step timing.

A run is one generation: the prompt's prefill (one step), then new_tokens - 1 decode steps (the prefill's
logits give the first new token). Prefill tokens/s = batch x prompt / prefill time; decode tokens/s =
batch x (new_tokens - 1) / the decode window (the decode steps only); per-token latency is the duration of a
decode step (model forward of one position for the whole batch). Model FLOPs follow
tradeoffs.models.counting (forward only: 2 N per token, attention at the mean context, lm_head on the
positions whose logits are computed).

Accuracy next to speed: the same weights in fp32 give the reference prefill logits and greedy tokens; a
lower precision reports its logits' relative error and the fraction of greedy tokens that match.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from tradeoffs.bench.timing import StepTimer
from tradeoffs.models import ModelConfig, build_model, flops_breakdown

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INFERENCE_DTYPES = tuple(TORCH_DTYPES)


def load_model(config: ModelConfig, dtype: str, device: str, seed: int) -> nn.Module:
    """The seeded model in `dtype` on `device`, in eval mode."""
    torch.manual_seed(seed)
    return build_model(config).to(device=device, dtype=TORCH_DTYPES[dtype]).eval()


def prompt_tokens(config: ModelConfig, batch: int, length: int, seed: int, device: str) -> torch.Tensor:
    """A seeded random prompt of token ids (batch, length)."""
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.randint(0, config.vocab_size, (batch, length), generator=generator).to(device)


def generation_run(model: nn.Module, prompt: torch.Tensor, new_tokens: int):
    """A run for tradeoffs.bench.timing.measure_steps: prefill, then decode steps up to `new_tokens`."""

    @torch.no_grad()
    def run(timer: StepTimer) -> torch.Tensor:
        cache = model.new_cache(prompt.shape[1] + new_tokens)
        logits, cache = timer.step("prefill", functools.partial(model.prefill, prompt, cache))
        tokens = [logits.argmax(-1)]
        for _ in range(new_tokens - 1):
            logits, cache = timer.step("decode", functools.partial(model.decode_step, tokens[-1], cache))
            tokens.append(logits.argmax(-1))
        return torch.stack(tokens, dim=1)

    return run


@dataclass(frozen=True)
class InferenceFlops:
    """Forward FLOPs of one prefill and of the decode window of one run (whole batch)."""

    prefill: float
    decode: float


def inference_flops(config: ModelConfig, batch: int, prompt: int, new_tokens: int) -> InferenceFlops:
    """Model FLOPs: dense 2 N per position, attention 2 n_layer ctx d_model at each position's context
    (the mean over the window), lm_head once per sequence for the prefill and per decode step."""
    dense = flops_breakdown(config, 1)["dense"]
    lm_head = flops_breakdown(config, 1)["lm_head"]
    per_context = 2 * config.n_layer * config.d_model
    prefill = batch * (prompt * dense + per_context * prompt * (prompt + 1) / 2 + lm_head)
    steps = new_tokens - 1
    mean_context = prompt + 1 + (steps - 1) / 2  # the k-th decode step attends to prompt + k keys
    decode = batch * steps * (dense + per_context * mean_context + lm_head)
    return InferenceFlops(prefill, decode)


@dataclass(frozen=True)
class InferenceAccuracy:
    """A precision against fp32 with the same weights and prompt."""

    logits_rel_error: float
    token_agreement: float


def accuracy_against_fp32(
    model: nn.Module, reference: nn.Module, prompt: torch.Tensor, new_tokens: int
) -> InferenceAccuracy:
    """Relative error of the prefill logits and the fraction of greedy tokens equal to fp32's."""
    with torch.no_grad():
        logits, _ = model.prefill(prompt)
        expected, _ = reference.prefill(prompt)
        tokens = generation_run(model, prompt, new_tokens)(StepTimer(prompt.device.type))
        expected_tokens = generation_run(reference, prompt, new_tokens)(StepTimer(prompt.device.type))
    error = ((logits.double() - expected.double()).norm() / expected.double().norm()).item()
    return InferenceAccuracy(error, (tokens == expected_tokens).double().mean().item())
