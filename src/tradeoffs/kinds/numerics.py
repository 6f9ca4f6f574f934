"""The numerics kind: QSNR, relative MSE, bias and alignment of a format on a synthetic distribution,
with an optional blockwise Hadamard rotation before quantization (undone before measuring), and the
error energy of the quantized blocks binned by their crest factor (for the Monte-Carlo side of the
INT-vs-FP crest-factor study; measured on the values the quantizer sees, i.e. after rotation)."""

from __future__ import annotations

from pathlib import Path

import torch

from tradeoffs.config import NumericsConfig
from tradeoffs.formats import fake_quant, hadamard_rotate
from tradeoffs.numerics import crest_binned_error, crest_factor, quantization_error, sample
from tradeoffs.results import Metric, Outcome


def run(config: NumericsConfig, out_dir: Path) -> Outcome:
    rows = config.n_values // config.row_size
    x = sample(config.distribution, rows, config.row_size, config.seed)
    signs_seed = config.seed if config.rotation == "random_hadamard" else None
    rotated = x if config.rotation == "none" else hadamard_rotate(x, config.rotation_size, signs_seed=signs_seed)
    generator = torch.Generator().manual_seed(config.seed + 1)
    q_rotated = fake_quant(rotated, config.format, axis=-1, generator=generator)
    q = q_rotated
    if config.rotation != "none":
        q = hadamard_rotate(q_rotated, config.rotation_size, signs_seed=signs_seed, inverse=True)
    error = quantization_error(x, q)
    spec = config.format
    # the crest factor of a scale's granule: a block, a row (channel scales) or the whole tensor
    crest_block = {"block": spec.block_size, "channel": config.row_size}.get(spec.granularity, config.n_values)
    crest = crest_factor(rotated, crest_block)
    bins = crest_binned_error(rotated, q_rotated, crest_block, crest)
    metrics = [
        Metric("qsnr_db", error.qsnr_db, "dB"),
        Metric("relative_mse", error.relative_mse),
        Metric("bias", error.bias, "rms"),
        Metric("alignment", error.alignment),
        Metric("bits_per_element", spec.bits_per_element(config.row_size), "bit"),
        Metric("crest_factor_mean", crest.mean().item()),
    ]
    for crest_bin in bins:
        labels = {"crest": crest_bin.crest_low}
        metrics += [
            Metric("crest_bin_blocks", crest_bin.blocks, "", labels),
            Metric("crest_bin_signal", crest_bin.signal, "", labels),
            Metric("crest_bin_noise", crest_bin.noise, "", labels),
        ]
    return Outcome(metrics=metrics)
