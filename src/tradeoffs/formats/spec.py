"""Format descriptions: plain dataclasses (no torch), used both as the Hydra schema of the format presets and
by the quantization arithmetic. Definitions follow the OCP MX v1.0 spec and the NVFP4 paper."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum

from tradeoffs.errors import ConfigError, check_choice

GRANULARITIES = ("tensor", "channel", "block")
SCALE_FORMATS = ("fp32", "bf16", "fp16", "e8m0", "e4m3", "ue5m3")
ROUNDINGS = ("nearest", "stochastic")
SPECIALS = ("auto", "ieee", "fn", "none")


class ScaleRule(StrEnum):
    """How a granule's scale follows from its values (format.scale_rule; the members are named as spelled in
    YAML and Hydra overrides). The arithmetic of each is in tradeoffs.formats.scales."""

    absmax = "absmax"  # amax / max_element, rounded to the scale format
    floor = "floor"  # OCP MX: 2^(floor(log2 amax) - emax_elem)
    ceil = "ceil"  # round-up (RCEIL): 2^ceil(log2(amax / max_element))
    quartet = "quartet"  # Quartet and MR-GPTQ: 2^(floor(log2 amax) - emax_elem) / (3/4)
    rms = "rms"  # clip_ratio x the granule's RMS in place of amax (QuEST, Quartet)


# Element names with a fixed meaning. Any other "eXmY" is a generic minifloat, any "intN" an integer.
NAMED_ELEMENTS = {
    "fp32": (8, 23),
    "bf16": (8, 7),
    "fp16": (5, 10),
    "fp8_e4m3": (4, 3),
    "fp8_e5m2": (5, 2),
    "fp6_e2m3": (2, 3),
    "fp6_e3m2": (3, 2),
    "fp4_e2m1": (2, 1),
}
# OCP conventions for encodings of inf/NaN: E4M3 keeps only S.1111.111 for NaN, FP6/FP4 have no specials.
OCP_SPECIALS = {(4, 3): "fn", (2, 3): "none", (3, 2): "none", (2, 1): "none"}
_MINIFLOAT = re.compile(r"^(?:fp\d+_)?e(\d+)m(\d+)$")
_INTEGER = re.compile(r"^int(\d+)$")


@dataclass(frozen=True)
class ElementFormat:
    """One scalar number format: an integer grid or a minifloat EeMm."""

    kind: str  # "int" or "float"
    bits: int
    exp_bits: int = 0
    man_bits: int = 0
    bias: int = 0
    special: str = "none"  # ieee: top exponent is inf/NaN; fn: only all-ones is NaN; none: all finite
    asymmetric: bool = False

    @property
    def max_value(self) -> float:
        """Largest finite magnitude (integer elements: the largest code, symmetric grids exclude -2^(b-1))."""
        if self.kind == "int":
            return float(2**self.bits - 1) if self.asymmetric else float(2 ** (self.bits - 1) - 1)
        top = 2**self.exp_bits - 1
        if self.special == "ieee":
            return (2 - 2.0**-self.man_bits) * 2.0 ** (top - 1 - self.bias)
        if self.special == "fn":
            if self.man_bits == 0:
                return 2.0 ** (top - 1 - self.bias)
            return (2 - 2.0 ** (1 - self.man_bits)) * 2.0 ** (top - self.bias)
        return (2 - 2.0**-self.man_bits) * 2.0 ** (top - self.bias)

    @property
    def min_exponent(self) -> int:
        """Exponent of the smallest normal number (1 - bias)."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """floor(log2(max_value)): the OCP emax_elem used by the power-of-two scale rules."""
        return math.floor(math.log2(self.max_value))

    @property
    def has_inf(self) -> bool:
        return self.kind == "float" and self.special == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.kind == "float" and self.special in ("ieee", "fn")


def parse_element(name: str, *, asymmetric: bool = False, special: str = "auto", bias: int = -1) -> ElementFormat:
    """Build an ElementFormat from a name: int2..int8, fp8_e4m3 and the other OCP names, bf16, fp16, fp32,
    or any eXmY (e >= 1, m >= 0)."""
    check_choice("special", special, SPECIALS)
    if m := _INTEGER.match(name):
        bits = int(m.group(1))
        if not 2 <= bits <= 16:
            raise ConfigError(f"element '{name}': integer width must be 2..16 bits")
        return ElementFormat("int", bits, asymmetric=asymmetric)
    if asymmetric:
        raise ConfigError(f"element '{name}': asymmetric (zero point) applies to integer elements only")
    if name in NAMED_ELEMENTS:
        e, m_bits = NAMED_ELEMENTS[name]
    elif m := _MINIFLOAT.match(name):
        e, m_bits = int(m.group(1)), int(m.group(2))
    else:
        raise ConfigError(
            f"unknown element format '{name}': expected one of {sorted(NAMED_ELEMENTS)}, "
            "intN (N = 2..16) or eXmY (X >= 1, Y >= 0)"
        )
    if not (1 <= e <= 8 and 0 <= m_bits <= 23):
        raise ConfigError(f"element '{name}': need 1 <= exponent bits <= 8 and 0 <= mantissa bits <= 23")
    if special == "auto":
        special = OCP_SPECIALS.get((e, m_bits), "ieee")
    if special == "ieee" and e == 1:
        raise ConfigError(f"element '{name}': one exponent bit leaves no finite normals with IEEE specials")
    bias = 2 ** (e - 1) - 1 if bias < 0 else bias
    return ElementFormat("float", 1 + e + m_bits, e, m_bits, bias, special)


@dataclass
class FormatSpec:
    """A complete quantization format: element grid, scaling granularity and scale representation.

    granularity: tensor (one scale), channel (one scale per slice along the quantization axis), block
    (one scale per `block_size` consecutive elements along the axis: per-group and MX/NV block formats).
    scale_rule: absmax (s = amax / max_element, rounded to scale_format), floor (OCP MX:
    2^(floor(log2 amax) - emax_elem)), ceil (round-up: 2^ceil(log2(amax / max_element))), quartet
    (2^(floor(log2 amax) - emax_elem) / (3/4)), rms (clip at clip_ratio x the granule's RMS, as QuEST and
    Quartet do after a Hadamard rotation: s = clip_ratio * rms / max_element, rounded to scale_format, the
    nearest power of two for E8M0). tensor_scale adds the NVFP4 second-level FP32 scale.
    """

    name: str = field(default="", metadata={"affects_result": False})  # descriptive: not hashed
    element: str = "fp32"
    asymmetric: bool = False
    special: str = "auto"
    bias: int = -1
    saturate: bool = True
    granularity: str = "tensor"
    block_size: int = 0
    scale_format: str = "fp32"
    scale_bias: int = -1
    scale_rule: str = ScaleRule.absmax  # a ScaleRule once built: declared str, Hydra leaves its check to __post_init__
    clip_ratio: float = 0.0  # scale_rule=rms only: the clipping threshold in units of the granule's RMS
    tensor_scale: bool = False
    rounding: str = "nearest"

    def __post_init__(self) -> None:
        check_choice("format.granularity", self.granularity, GRANULARITIES)
        check_choice("format.scale_rule", self.scale_rule, ScaleRule)
        self.scale_rule = ScaleRule(self.scale_rule)
        check_choice("format.scale_format", self.scale_format, SCALE_FORMATS)
        check_choice("format.rounding", self.rounding, ROUNDINGS)
        element = self.element_format  # validates the element name
        if self.granularity == "block" and self.block_size < 1:
            raise ConfigError(f"format.block_size must be >= 1 for block granularity, got {self.block_size}")
        if self.granularity != "block" and self.block_size != 0:
            raise ConfigError(f"format.block_size={self.block_size} needs granularity=block (got '{self.granularity}')")
        if self.scale_rule != ScaleRule.absmax and self.asymmetric:
            raise ConfigError("scale rules floor, ceil, quartet and rms need a symmetric element")
        if (self.scale_rule == ScaleRule.rms) != (self.clip_ratio > 0):
            raise ConfigError(
                f"format.clip_ratio={self.clip_ratio} with scale_rule={self.scale_rule}: scale_rule=rms needs "
                "clip_ratio > 0, and clip_ratio applies to scale_rule=rms only"
            )
        if self.scale_format == "e8m0" and self.scale_rule in (ScaleRule.absmax, ScaleRule.quartet):
            raise ConfigError(
                f"scale_format=e8m0 holds powers of two only: scale_rule must be floor or ceil, not '{self.scale_rule}'"
            )
        if self.tensor_scale and self.scale_rule not in (ScaleRule.absmax, ScaleRule.rms):
            raise ConfigError(
                f"tensor_scale (two-level scaling) needs scale_rule absmax or rms, not '{self.scale_rule}'"
            )
        if self.tensor_scale and self.scale_format in ("fp32", "e8m0"):
            raise ConfigError("tensor_scale (a second-level FP32 scale) needs a narrow block scale_format")
        if not self.saturate and element.kind == "float" and not element.has_nan:
            raise ConfigError(
                f"format.saturate=false needs an element with inf or NaN codes; '{self.element}' has none"
            )
        if self.is_identity and (self.granularity != "tensor" or self.rounding != "nearest"):
            raise ConfigError(f"element '{self.element}' is a plain cast: use granularity=tensor")
        del element

    @property
    def element_format(self) -> ElementFormat:
        return parse_element(self.element, asymmetric=self.asymmetric, special=self.special, bias=self.bias)

    @property
    def is_cast(self) -> bool:
        """bf16/fp16/fp32 elements are plain casts (no scale), as in mixed-precision training."""
        return self.element in ("fp32", "bf16", "fp16")

    @property
    def is_identity(self) -> bool:
        return self.element == "fp32"

    @property
    def scale_element(self) -> ElementFormat | None:
        """The scale's own number format (None for FP32 scales and for E8M0, which is built from exponents)."""
        if self.scale_format in ("fp32", "e8m0"):
            return None
        name = {"bf16": "bf16", "fp16": "fp16", "e4m3": "fp8_e4m3", "ue5m3": "e5m3"}[self.scale_format]
        special = "none" if self.scale_format == "ue5m3" else "auto"
        return parse_element(name, special=special, bias=self.scale_bias)

    def bits_per_element(self, axis_length: int | None = None) -> float:
        """Storage cost in bits per element including scales (and zero points), for large tensors.

        Channel scales need the length of the quantization axis; per-tensor scales cost ~0 bits/element.
        """
        element = self.element_format
        scale_bits = {"fp32": 32, "bf16": 16, "fp16": 16, "e8m0": 8, "e4m3": 8, "ue5m3": 8}[self.scale_format]
        if self.is_cast:
            return float(element.bits)
        per_scale = scale_bits + (element.bits if self.asymmetric else 0)
        if self.granularity == "block":
            return element.bits + per_scale / self.block_size
        if self.granularity == "channel":
            if axis_length is None:
                raise ValueError("channel granularity: pass the length of the quantization axis")
            return element.bits + per_scale / axis_length
        return float(element.bits)
