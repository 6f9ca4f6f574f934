"""Quantization error measures, accumulated in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QuantError:
    qsnr_db: float  # 10 log10(sum x^2 / sum (x - q)^2)
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
    qsnr = 10 * math.log10(1 / relative) if relative > 0 else float("inf")
    rms = math.sqrt(signal / x64.numel())
    bias = (error * torch.sign(x64)).mean().item() / rms if rms > 0 else float("nan")
    alignment = torch.nn.functional.cosine_similarity(x64, q64, dim=0).item()
    return QuantError(qsnr, relative, bias, alignment)


def crest_factor(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """max |x| / rms(x) of each block of `block_size` consecutive values along the last axis."""
    blocks = x.double().reshape(-1, block_size)
    rms = blocks.square().mean(dim=1).sqrt()
    return blocks.abs().amax(dim=1) / rms
