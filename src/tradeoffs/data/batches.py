"""Batches of (input, next-token target) windows from a split's token array.

Training draws windows at random starts from a seeded torch.Generator (the same generator state gives the
same batches on any machine); evaluation walks disjoint consecutive windows from the start of the split, so
every target token is scored exactly once and the result does not depend on any random state.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


def _check_length(tokens: np.ndarray, context_length: int) -> None:
    if len(tokens) < context_length + 1:
        raise ValueError(
            f"split has {len(tokens)} tokens, fewer than context_length + 1 = {context_length + 1}; "
            "use a shorter context or larger split fractions"
        )


def _windows(tokens: np.ndarray, starts: np.ndarray, context_length: int) -> tuple[Tensor, Tensor]:
    block = torch.from_numpy(tokens[starts[:, None] + np.arange(context_length + 1)].astype(np.int64))
    return block[:, :-1], block[:, 1:]


def random_batch(
    tokens: np.ndarray, batch_size: int, context_length: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """`batch_size` windows at uniformly random starts: inputs x and targets y = x shifted by one,
    both int64 (batch_size, context_length) on the CPU."""
    _check_length(tokens, context_length)
    starts = torch.randint(0, len(tokens) - context_length, (batch_size,), generator=generator).numpy()
    return _windows(tokens, starts, context_length)


def eval_batches(
    tokens: np.ndarray, batch_size: int, context_length: int, max_windows: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Disjoint consecutive windows (starts 0, T, 2T, ...) in batches of up to `batch_size`; at most
    `max_windows` windows (None: all that fit, (len - 1) // T)."""
    _check_length(tokens, context_length)
    count = (len(tokens) - 1) // context_length
    count = min(count, max_windows) if max_windows is not None else count
    for first in range(0, count, batch_size):
        starts = np.arange(first, min(first + batch_size, count)) * context_length
        yield _windows(tokens, starts, context_length)
