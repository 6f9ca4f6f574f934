"""Numerics studies: synthetic distributions and quantization-error measures (QSNR and friends)."""

from tradeoffs.numerics.distributions import sample
from tradeoffs.numerics.error import (
    CrestBin,
    QuantError,
    crest_binned_error,
    crest_factor,
    qsnr_db,
    quantization_error,
)

__all__ = ["CrestBin", "QuantError", "crest_binned_error", "crest_factor", "qsnr_db", "quantization_error", "sample"]
