"""Seeded synthetic tensors shaped like the data formats meet: iid tails, spikes, channel outliers."""

from __future__ import annotations

import numpy as np
import torch

from tradeoffs.config import DistributionConfig


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
