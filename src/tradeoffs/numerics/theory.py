"""The INT-vs-FP paper's QSNR model (Chen et al. 2025, "INT v.s. FP", Theorems 1-2 and the NV correction)
as pure functions of the crest factor kappa = max|x| / rms(x) of a quantization block.

For a block of Gaussian values whose maximum sits at kappa standard deviations, scaled so that the maximum
maps to max_element / rho (rho >= 1 is the scale's overhead: 1.5 for power-of-two E8M0 scales, 1.05 for
E4M3 scales, 1 for exact FP32 scales):

  INT-b:  QSNR = 10.8 + 6.02 (b - 1) - 20 log10 rho - 20 log10 kappa     (uniform noise Delta^2 / 12,
          with 2^(b-1) levels per side as in the paper)
  FP EeMm with bias B and largest value Q:  relative MSE = alpha_M w_norm + beta (rho kappa)^2 p_sub + w_zero,
          alpha_M = 1 / (24 * 4^M)              relative rounding noise of normal values,
          beta = 4^(1 - B - M) / (12 Q^2)       absolute noise of subnormal values,
          w_norm = E[z^2; |z| > tau_1]           energy share of normal values (z ~ N(0, 1)),
          p_sub  = P(tau_0 < |z| < tau_1)        share of subnormal values,
          w_zero = E[z^2; |z| < tau_0]           energy of values flushed to zero,
          tau_1 = (rho kappa / Q) 2^(1 - B),  tau_0 = (rho kappa / Q) 2^(-B - M).
  Blocks whose scale is exact up to rho (NV formats, k = block size) map their maximum exactly: the INT
  noise is scaled by (1 - 1/k) and kappa^2 / k is removed from w_norm.

With the paper's rho these give its crossovers (kappa where INT and FP of one width tie): 7.55 for 8-bit
MX, 1.96 for 6-bit, 2.04 for 4-bit MX and 2.39 for NV 4-bit (tests/test_numerics_theory.py checks them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

from tradeoffs.errors import ConfigError
from tradeoffs.formats.spec import FormatSpec, ScaleRule
from tradeoffs.numerics.error import qsnr_db

RHO_POWER_OF_TWO = 1.5  # the paper's scale overhead for E8M0 (power-of-two) block scales
RHO_NARROW_SCALE = 1.05  # ... for E4M3-like block scales (NVFP4, NVINT4)


@dataclass(frozen=True)
class TheoryFormat:
    """What the model needs of a format: element kind and grid, scale overhead rho, exact-max block size."""

    name: str
    kind: str  # "int" or "float"
    bits: int
    man_bits: int = 0
    bias: int = 0
    max_value: float = 0.0
    rho: float = 1.0
    exact_max_block: int = 0  # k of the NV correction; 0: no correction


def theory_format(spec: FormatSpec) -> TheoryFormat:
    """The model's view of a quantization format: rho from its scale rule and scale format."""
    element = spec.element_format
    if spec.is_cast or element.asymmetric:
        raise ConfigError(f"format '{spec.name or spec.element}': the QSNR model covers scaled symmetric formats only")
    if spec.scale_rule == ScaleRule.rms:
        raise ConfigError(f"format '{spec.name}': the QSNR model assumes absmax scaling; scale_rule=rms clips")
    block = spec.block_size if spec.granularity == "block" else 0  # an exact scale maps a block's max exactly
    if spec.scale_format == "e8m0" or spec.scale_rule in (ScaleRule.floor, ScaleRule.ceil, ScaleRule.quartet):
        rho, exact_block = RHO_POWER_OF_TWO, 0
    elif spec.scale_format == "fp32":
        rho, exact_block = 1.0, block
    else:
        rho, exact_block = RHO_NARROW_SCALE, block
    return TheoryFormat(
        spec.name or spec.element,
        element.kind,
        element.bits,
        element.man_bits,
        element.bias,
        element.max_value,
        rho,
        exact_block,
    )


def _normal_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def relative_mse(fmt: TheoryFormat, kappa: np.ndarray | float) -> np.ndarray:
    """The model's quantization noise power relative to the signal power, at crest factor(s) kappa."""
    kappa = np.asarray(kappa, dtype=np.float64)
    k = fmt.exact_max_block
    if fmt.kind == "int":
        noise = (fmt.rho * kappa) ** 2 / (12.0 * 4.0 ** (fmt.bits - 1))
        return noise * (1 - 1 / k) if k else noise
    alpha = 1.0 / (24.0 * 4.0**fmt.man_bits)
    beta = 4.0 ** (1 - fmt.bias - fmt.man_bits) / (12.0 * fmt.max_value**2)
    reach = fmt.rho * kappa / fmt.max_value
    tau0, tau1 = reach * 2.0 ** (-fmt.bias - fmt.man_bits), reach * 2.0 ** (1 - fmt.bias)
    p_sub = 2.0 * (ndtr(tau1) - ndtr(tau0))
    w_zero = 2.0 * ndtr(tau0) - 1.0 - 2.0 * tau0 * _normal_pdf(tau0)
    w_norm = 2.0 * (tau1 * _normal_pdf(tau1) + 1.0 - ndtr(tau1))
    if k:
        w_norm = np.maximum(0.0, w_norm - kappa**2 / k)
    return alpha * w_norm + beta * (fmt.rho * kappa) ** 2 * p_sub + w_zero


def model_qsnr_db(fmt: TheoryFormat, kappa: np.ndarray | float) -> float | np.ndarray:
    """The model's QSNR in dB at crest factor(s) kappa: qsnr_db of its relative MSE (signal power 1)."""
    return qsnr_db(1.0, relative_mse(fmt, kappa))


def crossover_crest(int_fmt: TheoryFormat, fp_fmt: TheoryFormat, low: float = 1.01, high: float = 64.0) -> float:
    """The crest factor where the INT and FP formats' model QSNRs are equal (INT wins below it)."""
    if (int_fmt.kind, fp_fmt.kind) != ("int", "float"):
        raise ConfigError(f"crossover needs an INT and an FP format, got {int_fmt.name} and {fp_fmt.name}")

    def gap(kappa: float) -> float:
        return float(model_qsnr_db(int_fmt, kappa) - model_qsnr_db(fp_fmt, kappa))

    if gap(low) * gap(high) > 0:
        raise ConfigError(f"{int_fmt.name} vs {fp_fmt.name}: the model's QSNRs do not cross in [{low}, {high}]")
    return brentq(gap, low, high, xtol=1e-6)
