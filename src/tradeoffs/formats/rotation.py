"""Orthonormal Hadamard rotations applied blockwise along an axis (optionally with random signs)."""

from __future__ import annotations

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


def hadamard_rotate(
    x: torch.Tensor, size: int, *, axis: int = -1, signs_seed: int | None = None, inverse: bool = False
) -> torch.Tensor:
    """Rotate consecutive blocks of `size` elements along `axis` by the (randomized) Hadamard matrix;
    `inverse=True` undoes it. The axis length must be a multiple of `size`."""
    moved = x.movedim(axis, -1)
    length = moved.shape[-1]
    if length % size:
        raise ConfigError(f"Hadamard size {size} does not divide axis {axis} of length {length}")
    matrix = hadamard_matrix(size, signs_seed=signs_seed, dtype=x.dtype).to(x.device)
    if inverse:
        matrix = matrix.T
    blocks = moved.reshape(*moved.shape[:-1], length // size, size)
    return (blocks @ matrix).reshape(moved.shape).movedim(-1, axis)
