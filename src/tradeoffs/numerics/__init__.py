"""Numerics studies: synthetic distributions and quantization-error measures (QSNR and friends)."""

from tradeoffs.numerics.distributions import sample
from tradeoffs.numerics.error import QuantError, crest_factor, quantization_error

__all__ = ["QuantError", "crest_factor", "quantization_error", "sample"]
