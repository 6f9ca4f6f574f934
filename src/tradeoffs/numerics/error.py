"""Quantization error measures, accumulated in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch


@dataclass(frozen=True)
class QuantError:
    qsnr_db: float  # -10 log10(relative_mse), by qsnr_db
    relative_mse: float  # mean (x - q)^2 / mean x^2
    bias: float  # mean((q - x) sign(x)) / rms(x): < 0 when quantization shrinks magnitudes
    alignment: float  # cosine similarity of x and q


def quantization_error(x: torch.Tensor, q: torch.Tensor) -> QuantError:
    """Error of the quantized `q` against the reference `x` (same shape)."""
    x64, q64 = x.double().flatten(), q.double().flatten()
    error = q64 - x64
    signal = x64.square().sum().item()
    noise = error.square().sum().item()
    relative = noise / signal if signal > 0 else float("nan")
    qsnr = qsnr_db(signal, noise)
    rms = math.sqrt(signal / x64.numel())
    bias = (error * torch.sign(x64)).mean().item() / rms if rms > 0 else float("nan")
    alignment = torch.nn.functional.cosine_similarity(x64, q64, dim=0).item()
    return QuantError(qsnr, relative, bias, alignment)


def qsnr_db(signal: npt.ArrayLike, noise: npt.ArrayLike) -> float | np.ndarray:
    """Quantization signal-to-noise ratio in dB, -10 log10(noise / signal), from the summed squares of the signal
    and of the error (or powers, or arrays of them elementwise: a float for scalars); inf where the noise is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = np.where(np.asarray(noise) > 0, -10 * np.log10(np.divide(noise, signal)), np.inf) + 0.0  # 0 dB: +0.0
    return float(db) if db.ndim == 0 else db


def crest_factor(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """max |x| / rms(x) of each block of `block_size` consecutive values along the last axis."""
    blocks = x.double().reshape(-1, block_size)
    rms = blocks.square().mean(dim=1).sqrt()
    return blocks.abs().amax(dim=1) / rms


CREST_BIN_WIDTH = 0.25
CREST_BIN_TOP = 12.0  # blocks above it share one open bin starting at CREST_BIN_TOP


@dataclass(frozen=True)
class CrestBin:
    crest_low: float  # lower edge of the bin
    blocks: int
    signal: float  # sum of x^2 over the bin's blocks
    noise: float  # sum of (x - q)^2 over the bin's blocks


def crest_binned_error(
    x: torch.Tensor, q: torch.Tensor, block_size: int, crest: torch.Tensor | None = None
) -> list[CrestBin]:
    """Signal and noise energy summed over blocks grouped by crest factor (bins of CREST_BIN_WIDTH); `crest`
    is crest_factor(x, block_size) when the caller has it already.

    Sums rather than per-bin QSNRs, so runs can be pooled: QSNR of a bin = 10 log10(signal / noise)."""
    blocks = x.double().reshape(-1, block_size)
    error = (q.double().reshape(-1, block_size) - blocks).square().sum(dim=1)
    signal = blocks.square().sum(dim=1)
    crest = crest_factor(x, block_size) if crest is None else crest
    index = (crest.clamp(max=CREST_BIN_TOP) / CREST_BIN_WIDTH).floor().long()
    valid = signal > 0
    index, error, signal = index[valid], error[valid], signal[valid]
    size = int(CREST_BIN_TOP / CREST_BIN_WIDTH) + 1
    counts = torch.bincount(index, minlength=size)
    signal_sums = torch.zeros(size, dtype=torch.float64).index_add_(0, index, signal)
    noise_sums = torch.zeros(size, dtype=torch.float64).index_add_(0, index, error)
    return [
        CrestBin(i * CREST_BIN_WIDTH, int(counts[i]), float(signal_sums[i]), float(noise_sums[i]))
        for i in range(size)
        if counts[i] > 0
    ]
