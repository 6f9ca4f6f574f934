"""Orthonormal Hadamard rotations applied blockwise along an axis (optionally with random signs)."""

from __future__ import annotations

import functools
import math

import torch

from tradeoffs.errors import ConfigError


def is_power_of_two(n: int) -> bool:
    """Whether the integer n is 1, 2, 4, 8, ... (the sizes of Sylvester Hadamard matrices)."""
    return n >= 1 and not n & (n - 1)


def hadamard_matrix(size: int, *, signs_seed: int | None = None, dtype=torch.float32) -> torch.Tensor:
    """The orthonormal Sylvester Hadamard matrix H/sqrt(n) of size 2^k; with `signs_seed`, D H/sqrt(n) where
    D is a seeded random +-1 diagonal (a randomized Hadamard transform)."""
    from scipy.linalg import hadamard  # imported on use: scipy costs a job 0.2 s to import

    if not is_power_of_two(size):
        raise ConfigError(f"Hadamard size must be a power of two, got {size}")
    matrix = torch.tensor(hadamard(size), dtype=torch.float64) / math.sqrt(size)
    if signs_seed is not None:
        generator = torch.Generator().manual_seed(signs_seed)
        signs = torch.randint(0, 2, (size,), generator=generator, dtype=torch.float64) * 2 - 1
        matrix = signs[:, None] * matrix
    return matrix.to(dtype)


@functools.lru_cache(maxsize=32)
def _shared_matrix(size: int, signs_seed: int | None, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """hadamard_matrix on a device, built once per (size, seed, dtype, device) and shared: read it, never
    write it (a training step rotates many tensors with the same matrix)."""
    return hadamard_matrix(size, signs_seed=signs_seed, dtype=dtype).to(device)


def hadamard_rotate(
    x: torch.Tensor, size: int, *, axis: int = -1, signs_seed: int | None = None, inverse: bool = False
) -> torch.Tensor:
    """Rotate consecutive blocks of `size` elements along `axis` by the (randomized) Hadamard matrix;
    `inverse=True` undoes it. The axis length must be a multiple of `size`."""
    moved = x.movedim(axis, -1)
    length = moved.shape[-1]
    if length % size:
        raise ConfigError(f"Hadamard size {size} does not divide axis {axis} of length {length}")
    matrix = _shared_matrix(size, signs_seed, x.dtype, x.device)
    if inverse:
        matrix = matrix.T
    # one product over all blocks, laid out contiguously: the BLAS product that a batched one of strided
    # blocks (axis not last) would run block by block, with the same bits (tested)
    blocks = moved.contiguous().view(-1, size)
    return (blocks @ matrix).view(moved.shape).movedim(-1, axis)
