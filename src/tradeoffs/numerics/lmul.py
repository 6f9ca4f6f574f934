"""L-Mul, the approximate multiplier of "Addition is All You Need" (Luo & Sun 2024), against rounded
floating-point products, on the same random operands.

L-Mul replaces the mantissa product of x = (1 + f_x) 2^e_x and y = (1 + f_y) 2^e_y by an addition:
  L-Mul(x, y) = sign (1 + f_x + f_y + 2^-l(m)) 2^(e_x + e_y),   l(m) = m (m <= 3), 3 (m = 4), 4 (m > 4),
with the operands carrying m mantissa bits (here: rounded to nearest-even onto E8Mm, so the exponent range
plays no part). A floating-point multiply in format F rounds both operands to F, multiplies exactly and
rounds the product to F. Errors are against the exact product of the unrounded operands.
"""

from __future__ import annotations

import numpy as np
import torch

from tradeoffs.errors import check_choice
from tradeoffs.formats import parse_element
from tradeoffs.formats.element import floor_log2, pow2, round_to_element

OPERAND_DISTRIBUTIONS = ("loguniform", "gaussian")


def lmul_offset_bits(mantissa_bits: int) -> int:
    """l(m) of the paper: the offset 2^-l(m) stands in for the dropped mantissa product f_x f_y."""
    return mantissa_bits if mantissa_bits <= 3 else (3 if mantissa_bits == 4 else 4)


def lmul(x: torch.Tensor, y: torch.Tensor, mantissa_bits: int) -> torch.Tensor:
    """L-Mul of float32 tensors x and y with operands rounded to `mantissa_bits` mantissa bits."""
    element = parse_element(f"e8m{mantissa_bits}")
    xr, yr = round_to_element(x, element), round_to_element(y, element)
    ex, ey = floor_log2(xr.abs()), floor_log2(yr.abs())
    fx, fy = xr.abs() / pow2(ex) - 1, yr.abs() / pow2(ey) - 1
    mantissa = 1 + fx + fy + 2.0 ** -lmul_offset_bits(mantissa_bits)
    product = mantissa.double() * pow2(ex).double() * pow2(ey).double()
    product = torch.where((xr == 0) | (yr == 0), 0.0, product)
    return torch.copysign(product, xr * yr).float()


def float_multiply(x: torch.Tensor, y: torch.Tensor, element_name: str) -> torch.Tensor:
    """x * y computed in a floating-point format: operands and product rounded to nearest-even, saturating."""
    element = parse_element(element_name)
    product = round_to_element(x, element) * round_to_element(y, element)  # exact in float32 for <= 11 bits
    return round_to_element(product, element)


def random_operands(n: int, distribution: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float32 operand vectors: log-uniform magnitudes in [2^-3, 2^3) with random signs (products stay
    in the normal range of FP8), or standard normal."""
    check_choice("operands", distribution, OPERAND_DISTRIBUTIONS)
    rng = np.random.default_rng(seed)
    if distribution == "gaussian":
        values = rng.standard_normal((2, n))
    else:
        values = np.exp2(rng.uniform(-3.0, 3.0, (2, n))) * rng.choice([-1.0, 1.0], (2, n))
    tensor = torch.from_numpy(values.astype(np.float32))
    return tensor[0], tensor[1]


def relative_errors(approx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|approx - x y| / |x y| in float64 (operands with a zero product are dropped)."""
    exact = x.double() * y.double()
    keep = exact != 0
    return ((approx.double() - exact).abs() / exact.abs())[keep]
