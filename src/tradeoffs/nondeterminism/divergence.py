"""Where two greedy decodings of the same prompts part, and how far apart their logits were there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def first_divergence(reference: Sequence[int] | Tensor, other: Sequence[int] | Tensor) -> int | None:
    """The first position at which two token sequences differ, or None when they are identical. When one is
    a proper prefix of the other they part where the shorter one ends."""
    reference, other = torch.as_tensor(reference).flatten(), torch.as_tensor(other).flatten()
    common = min(len(reference), len(other))
    mismatch = (reference[:common] != other[:common]).nonzero()
    if len(mismatch):
        return int(mismatch[0])
    return None if len(reference) == len(other) else common


def agreement_by_position(divergences: Sequence[int | None], length: int) -> list[float]:
    """For each position t < length, the share of sequences identical to their reference up to and including
    t (a divergence at d counts as agreeing at positions < d)."""
    if not divergences:
        raise ValueError("agreement needs at least one sequence")
    return [sum(d is None or d > t for d in divergences) / len(divergences) for t in range(length)]


def top2_margins(logits: Tensor) -> Tensor:
    """Top-1 minus top-2 logit of each position (logits (..., vocab)): how far each greedy choice was from a
    flip."""
    top = logits.double().topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


@dataclass
class PromptDivergence:
    """One prompt's comparison with its reference decoding.

    `position`: first differing generated token (None: identical to the end); `logit_difference`: max |logit
    difference| at that position, where both runs saw the same context (None without divergence);
    `reference_margin`: the reference's top-1 minus top-2 logit there; `max_logit_difference`: max |logit
    difference| over every position with the same context (up to and including the divergence), 0.0 when the
    perturbed arithmetic was bit-identical; `min_reference_margin`: the reference's smallest top-1 minus top-2
    logit over all its positions (0.0: an exact tie, which argmax breaks towards the lower token id)."""

    position: int | None
    logit_difference: float | None
    reference_margin: float | None
    max_logit_difference: float
    min_reference_margin: float


def compare_prompt(
    reference_tokens: Tensor, reference_logits: Tensor, tokens: Tensor, logits: Tensor
) -> PromptDivergence:
    """Compare one prompt's decoding (tokens (new,), logits (new, vocab)) with the reference's."""
    position = first_divergence(reference_tokens, tokens)
    shared = len(tokens) if position is None else position + 1
    differences = (reference_logits[:shared].double() - logits[:shared].double()).abs().amax(dim=-1)
    margins = top2_margins(reference_logits)
    largest, smallest = float(differences.max()), float(margins.min())
    if position is None:
        return PromptDivergence(None, None, None, largest, smallest)
    return PromptDivergence(position, float(differences[position]), float(margins[position]), largest, smallest)
