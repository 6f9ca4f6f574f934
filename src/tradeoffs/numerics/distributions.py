"""Seeded synthetic tensors shaped like the data formats meet: iid tails, spikes, channel outliers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.identity import descriptive

DISTRIBUTIONS = ("gaussian", "laplace", "student_t", "spikes", "channel_outliers")


@dataclass
class DistributionConfig:
    """A synthetic value distribution for the numerics studies (conf/distribution/)."""

    name: str = descriptive("gaussian")
    family: str = "gaussian"
    dof: float = 0.0  # student_t degrees of freedom
    spike_fraction: float = 0.0  # spikes: share of values replaced by large spikes
    spike_scale: float = 0.0  # spikes: spike magnitude in standard deviations
    outlier_channels: int = 0  # channel_outliers: number of channels (columns) scaled up
    outlier_scale: float = 0.0  # channel_outliers: their scale factor
    row_scale_octaves: float = 0.0  # each row (token) scaled by 2^U(0, octaves): magnitudes vary like real data

    def __post_init__(self) -> None:
        check_choice("distribution.family", self.family, DISTRIBUTIONS)
        if self.family == "student_t":
            check_positive("distribution.dof", self.dof)
        if self.family == "spikes":
            if not 0 < self.spike_fraction < 1:
                raise ConfigError(f"distribution.spike_fraction must be in (0, 1), got {self.spike_fraction}")
            check_positive("distribution.spike_scale", self.spike_scale)
        if self.family == "channel_outliers":
            check_positive("distribution.outlier_channels", self.outlier_channels)
            check_positive("distribution.outlier_scale", self.outlier_scale)
        check_positive("distribution.row_scale_octaves", self.row_scale_octaves, allow_zero=True)


def sample(distribution: DistributionConfig, rows: int, columns: int, seed: int) -> torch.Tensor:
    """A (rows, columns) float32 tensor drawn from `distribution` with numpy's PCG64 seeded by `seed`.

    gaussian/laplace have unit variance; student_t is the standard t (variance dof/(dof-2)); spikes replaces
    a fraction of Gaussian values by +-spike_scale; channel_outliers scales a few random columns (channels)
    of a Gaussian matrix by outlier_scale, like the activation outliers of large language models. With
    row_scale_octaves > 0 every row is then scaled by 2^U(0, octaves), so that block maxima fall anywhere
    within a binade, as in real tensors (power-of-two block scales depend on where they fall).
    """
    rng = np.random.default_rng(seed)
    shape = (rows, columns)
    family = distribution.family
    if family == "gaussian":
        values = rng.standard_normal(shape)
    elif family == "laplace":
        values = rng.laplace(0.0, 1 / np.sqrt(2), shape)
    elif family == "student_t":
        values = rng.standard_t(distribution.dof, shape)
    elif family == "spikes":
        values = rng.standard_normal(shape)
        mask = rng.random(shape) < distribution.spike_fraction
        values[mask] = distribution.spike_scale * rng.choice([-1.0, 1.0], size=int(mask.sum()))
    elif family == "channel_outliers":
        values = rng.standard_normal(shape)
        channels = rng.choice(columns, size=min(distribution.outlier_channels, columns), replace=False)
        values[:, channels] *= distribution.outlier_scale
    else:  # the schema's check_choice makes this unreachable
        raise AssertionError(family)
    if distribution.row_scale_octaves > 0:
        values *= np.exp2(rng.uniform(0.0, distribution.row_scale_octaves, (rows, 1)))
    return torch.from_numpy(values.astype(np.float32))
