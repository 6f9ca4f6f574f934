"""The numerics kind: QSNR, relative MSE, bias and alignment of a format on a synthetic distribution,
with an optional blockwise Hadamard rotation before quantization (undone before measuring)."""

from __future__ import annotations

from pathlib import Path

import torch

from tradeoffs.config import NumericsConfig
from tradeoffs.formats import fake_quant, hadamard_rotate
from tradeoffs.numerics import crest_factor, quantization_error, sample
from tradeoffs.results import Metric, Outcome


def run(config: NumericsConfig, out_dir: Path) -> Outcome:
    rows = config.n_values // config.row_size
    x = sample(config.distribution, rows, config.row_size, config.seed)
    signs_seed = config.seed if config.rotation == "random_hadamard" else None
    rotated = x if config.rotation == "none" else hadamard_rotate(x, config.rotation_size, signs_seed=signs_seed)
    generator = torch.Generator().manual_seed(config.seed + 1)
    q = fake_quant(rotated, config.format, axis=-1, generator=generator)
    if config.rotation != "none":
        q = hadamard_rotate(q, config.rotation_size, signs_seed=signs_seed, inverse=True)
    error = quantization_error(x, q)
    spec = config.format
    crest_block = spec.block_size if spec.granularity == "block" else config.row_size
    crest = crest_factor(rotated, crest_block)
    metrics = [
        Metric("qsnr_db", error.qsnr_db, "dB"),
        Metric("relative_mse", error.relative_mse),
        Metric("bias", error.bias, "rms"),
        Metric("alignment", error.alignment),
        Metric("bits_per_element", spec.bits_per_element(config.row_size), "bit"),
        Metric("crest_factor_mean", crest.mean().item()),
    ]
    return Outcome(metrics=metrics)
