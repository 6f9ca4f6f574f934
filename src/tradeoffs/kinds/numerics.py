"""The numerics kind: QSNR, relative MSE, bias and alignment of a format on a synthetic distribution,
with an optional blockwise Hadamard rotation before quantization (undone before measuring), and the
error energy of the quantized blocks binned by their crest factor (for the Monte-Carlo side of the
INT-vs-FP crest-factor study; measured on the values the quantizer sees, i.e. after rotation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.formats import FormatSpec, fake_quant, hadamard_rotate, is_power_of_two
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind, require_cpu
from tradeoffs.numerics import crest_binned_error, crest_factor, quantization_error, sample
from tradeoffs.numerics.distributions import DistributionConfig
from tradeoffs.resources import GROUP_BELOW_S, JobResources, gpus, round_up, threads
from tradeoffs.results import Metric, Outcome

ROTATIONS = ("none", "hadamard", "random_hadamard")


@dataclass
class NumericsConfig(ExperimentConfig):
    """Quantization error of a format on a synthetic distribution (the numerics kind)."""

    kind: str = "numerics"
    format: FormatSpec = field(default_factory=FormatSpec)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)
    rotation: str = "none"
    rotation_size: int = 32
    n_values: int = 2**20
    row_size: int = 4096

    def __post_init__(self) -> None:
        check_choice("rotation", self.rotation, ROTATIONS)
        check_positive("n_values", self.n_values)
        check_positive("row_size", self.row_size)
        if self.n_values % self.row_size:
            raise ConfigError(f"row_size={self.row_size} does not divide n_values={self.n_values}")
        if self.format.granularity == "block" and self.row_size % self.format.block_size:
            raise ConfigError(f"format.block_size={self.format.block_size} does not divide row_size={self.row_size}")
        if self.rotation != "none" and (
            self.rotation_size < 2 or not is_power_of_two(self.rotation_size) or self.row_size % self.rotation_size
        ):
            raise ConfigError(
                f"rotation_size={self.rotation_size} must be a power of two dividing row_size={self.row_size}"
            )


def numerics_resources(config: NumericsConfig) -> JobResources:
    """Memory and time grow with the sample (about 100 bytes per value measured with its copies) and with a
    dense Hadamard rotation (its k x k matrix built in float64, and 2 n k flops)."""
    rotation = config.rotation_size if config.rotation != "none" else 0
    compute_s = config.n_values / 8e6 + 2 * config.n_values * rotation / 1e10
    mem_mb = 1000 + (100 * config.n_values + 24 * rotation**2) / 1e6
    need_gpus = gpus(config)
    small = compute_s < GROUP_BELOW_S and not need_gpus
    return JobResources(
        threads=threads(config),
        mem_mb=round_up(mem_mb, 100),
        runtime=5 + math.ceil(3 * compute_s / 60),
        gpus=need_gpus,
        group=config.kind if small else None,
    )


def run(config: NumericsConfig, job: Job) -> Outcome:
    require_cpu(config)
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


KIND = Kind(NumericsConfig, run, numerics_resources)
