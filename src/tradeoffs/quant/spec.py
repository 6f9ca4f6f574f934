"""Quantization specs: which operands of a Linear are quantized, each in a format of tradeoffs.formats.

A spec names the weight format, the activation (input) format, optionally the KV cache format, and how the
weight's scales are laid out (the format's own granularity, or per tensor, per output channel, per group of
input features). Named specs (W4A16, W3A16, W6A16, W8A16, W8A8, W4A8, W4A4) give defaults that any operand can override:
`get_spec("W4A4", weight="mxfp4", activation="mxfp4")`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.formats import FormatSpec, get_format

WEIGHT_GRANULARITIES = ("format", "tensor", "channel", "group")


@dataclass(frozen=True)
class QuantSpec:
    """Formats per operand. Empty activation/kv_cache: that operand stays in full precision.

    weight_granularity: `format` keeps the weight format's own scales; `tensor`, `channel` (one scale per
    output row) and `group` (`group_size` consecutive input features per scale) re-lay the scales of an
    INT or minifloat format with FP32 absmax (or asymmetric min-max) scales.
    """

    name: str = ""
    weight: str | FormatSpec = "int4_asym"
    activation: str | FormatSpec = ""
    kv_cache: str | FormatSpec = ""
    weight_granularity: str = "format"
    group_size: int = 128
    lm_head: bool = False  # quantize the output head too (GPTQ and most PTQ papers keep it in 16 bits)

    def __post_init__(self) -> None:
        check_choice("spec.weight_granularity", self.weight_granularity, WEIGHT_GRANULARITIES)
        if self.weight_granularity == "group" and self.group_size < 1:
            raise ConfigError(f"spec.group_size must be >= 1 for weight_granularity=group, got {self.group_size}")
        base = get_format(self.weight)
        if self.weight_granularity != "format" and (base.granularity == "block" and base.scale_format != "fp32"):
            raise ConfigError(
                f"spec.weight_granularity={self.weight_granularity}: format '{base.name or base.element}' has "
                f"{base.scale_format} block scales of its own; use weight_granularity=format"
            )
        for key in ("activation", "kv_cache"):
            if getattr(self, key):
                get_format(getattr(self, key))

    @property
    def weight_format(self) -> FormatSpec:
        """The weight's FormatSpec with the spec's scale layout applied (quantization axis: input features)."""
        base = get_format(self.weight)
        if self.weight_granularity == "format":
            return base
        layout = {"tensor": ("tensor", 0), "channel": ("channel", 0), "group": ("block", self.group_size)}
        granularity, block_size = layout[self.weight_granularity]
        return dataclasses.replace(base, granularity=granularity, block_size=block_size)

    @property
    def activation_format(self) -> FormatSpec | None:
        return get_format(self.activation) if self.activation else None

    @property
    def kv_cache_format(self) -> FormatSpec | None:
        return get_format(self.kv_cache) if self.kv_cache else None

    @property
    def weight_only(self) -> bool:
        """True when only weights are quantized (activations stay in 16/32 bits)."""
        activation = self.activation_format
        return activation is None or activation.is_cast

    @property
    def label(self) -> str:
        return self.name or f"W[{_format_label(self.weight)}]A[{_format_label(self.activation) or '16'}]"


def _format_label(fmt: str | FormatSpec) -> str:
    return fmt if isinstance(fmt, str) else fmt.name or fmt.element


_INT3_ASYM = FormatSpec(name="int3_asym", element="int3", asymmetric=True, granularity="channel")
_INT4_ASYM = FormatSpec(name="int4_asym_channel", element="int4", asymmetric=True, granularity="channel")
_INT4_CHANNEL = FormatSpec(name="int4_channel", element="int4", granularity="channel")
_INT4_TOKEN = FormatSpec(name="int4_token", element="int4", granularity="channel")  # per token on activations

# The named specs' defaults: GPTQ's weight-only setting (asymmetric min-max per output row), and W8A8-style
# specs with symmetric per-row weights and per-tensor dynamic INT activations (the setting activation outliers
# break; override activation="int8" for vector-wise, per-token scales).
SPECS: dict[str, dict] = {
    "W4A16": {"weight": _INT4_ASYM},
    "W3A16": {"weight": _INT3_ASYM},
    "W6A16": {"weight": "int6"},
    "W8A16": {"weight": "int8"},
    "W8A8": {"weight": "int8", "activation": "int8_tensor"},
    "W4A8": {"weight": _INT4_CHANNEL, "activation": "int8_tensor"},
    "W4A4": {"weight": _INT4_CHANNEL, "activation": _INT4_TOKEN},
}


def spec_names() -> list[str]:
    return list(SPECS)


def resolve_spec(config: object) -> None:
    """Replace the spec name of a frozen method config by its QuantSpec (for the configs' __post_init__)."""
    object.__setattr__(config, "spec", get_spec(config.spec))


def get_spec(name_or_spec: str | QuantSpec, **overrides) -> QuantSpec:
    """A QuantSpec from a named spec (SPECS) with per-operand overrides, or a QuantSpec itself."""
    if isinstance(name_or_spec, QuantSpec):
        return dataclasses.replace(name_or_spec, **overrides) if overrides else name_or_spec
    check_choice("spec", name_or_spec, SPECS)
    values = {"name": name_or_spec, **SPECS[name_or_spec]}
    unknown = set(overrides) - {f.name for f in dataclasses.fields(QuantSpec)}
    if unknown:
        raise ConfigError(
            f"spec: unknown keys {sorted(unknown)}; valid keys: {[f.name for f in dataclasses.fields(QuantSpec)]}"
        )
    return QuantSpec(**{**values, **overrides})
