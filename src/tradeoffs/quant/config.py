"""Typed configs of the post-training quantization methods, one per method, validated on construction.

Each config names a spec (tradeoffs.quant.spec) and the method's own settings; `quantize_(model, config)`
applies it. `method_config(name, **values)` builds one by method name (for a pipeline's YAML).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.formats.rotation import is_power_of_two
from tradeoffs.quant.search import FormatSearch, check_search
from tradeoffs.quant.spec import QuantSpec, get_spec, spec_names

GROUP_SCALES = ("auto", "upfront", "reached")


def _resolve(config: object) -> None:
    """Replace a spec name by its QuantSpec in a frozen config."""
    spec = config.spec
    if not isinstance(spec, QuantSpec):
        object.__setattr__(config, "spec", get_spec(spec))


def _weight_only_specs() -> list[str]:
    return [name for name in spec_names() if get_spec(name).weight_only]


def _activation_specs() -> list[str]:
    return [name for name in spec_names() if not get_spec(name).weight_only]


@dataclass(frozen=True)
class GPTQ:
    """GPTQ's settings (Frantar et al. 2023, the IST-DASLab reference).

    block_size: columns per lazy batch update; damp: added to the Hessian's diagonal as a fraction of its mean;
    act_order: columns in order of decreasing Hessian diagonal; group_scales: `upfront` fixes every group's
    scales from the original weight before any column is rounded, `reached` finds a group's scales when its
    first column is reached (the reference's default), `auto` is `reached` for groups with FP32 scales and
    `upfront` otherwise (MX and NV block formats, NVFP4's tensor scale included, and channel/tensor scales).
    """

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = False
    group_scales: str = "auto"

    def __post_init__(self) -> None:
        check_positive("gptq.block_size", self.block_size)
        check_positive("gptq.damp", self.damp, allow_zero=True)
        check_choice("gptq.group_scales", self.group_scales, GROUP_SCALES)


@dataclass(frozen=True)
class RTNConfig:
    """Round-to-nearest: every operand of the spec rounded in its format with scales from its own values
    (weights once, activations and KV cache dynamically per forward)."""

    spec: QuantSpec | str = "W4A16"

    def __post_init__(self) -> None:
        _resolve(self)


@dataclass(frozen=True)
class GPTQConfig:
    """GPTQ on the weights, layer by layer, each layer calibrated on the outputs of the already-quantized
    layers before it. A weight-only method: activations stay in full precision (for W4A4 combine with
    RotationConfig(gptq=GPTQ(...)), as QuaRot does)."""

    spec: QuantSpec | str = "W4A16"
    gptq: GPTQ = field(default_factory=GPTQ)

    def __post_init__(self) -> None:
        _resolve(self)
        if not self.spec.weight_only:
            raise ConfigError(
                f"gptq.spec: {self.spec.label} quantizes activations; GPTQ is a weight-only method. Valid "
                f"choices: {', '.join(_weight_only_specs())} (or a spec with activation=''); for quantized "
                "activations use RotationConfig or SmoothQuantConfig with gptq=GPTQ(...)"
            )
        _check_gptq_grid(self.spec, self.gptq)


def _check_gptq_grid(spec: QuantSpec, gptq: GPTQ) -> None:
    fmt = spec.weight_format
    if gptq.group_scales == "reached" and (fmt.granularity != "block" or fmt.scale_format != "fp32"):
        raise ConfigError(
            f"gptq.group_scales=reached needs groups with FP32 scales; weight format "
            f"'{fmt.name or fmt.element}' ({fmt.granularity}, {fmt.scale_format} scales) fixes its scales up "
            "front. Valid choices: auto, upfront"
        )
    if fmt.rounding != "nearest":
        raise ConfigError(f"gptq: weight format '{fmt.name}' rounds {fmt.rounding}; GPTQ needs rounding=nearest")


@dataclass(frozen=True)
class SmoothQuantConfig:
    """SmoothQuant (Xiao et al. 2023): per input channel j, s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) from
    calibration activations, X / s folded into the preceding norm and W * s into the Linear; then the spec's
    weights (RTN, or GPTQ with `gptq`) and activations. Only Linears fed by a norm can be smoothed: `layers`
    names them (default: all of them)."""

    spec: QuantSpec | str = "W8A8"
    alpha: float = 0.5
    layers: tuple[str, ...] = ()
    gptq: GPTQ | None = None

    def __post_init__(self) -> None:
        _resolve(self)
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"smoothquant.alpha must be in [0, 1], got {self.alpha}")
        if self.spec.weight_only:
            raise ConfigError(
                f"smoothquant.spec: {self.spec.label} leaves activations unquantized, which smoothing exists "
                f"for. Valid choices: {', '.join(_activation_specs())}"
            )
        if self.gptq is not None:
            _check_gptq_grid(self.spec, self.gptq)


@dataclass(frozen=True)
class RotationConfig:
    """QuaRot-style Hadamard rotation: the residual stream rotated by an orthogonal (randomized) Hadamard
    matrix folded into the weights (norm gains folded into the next Linears, LayerNorm turned into RMSNorm on
    a mean-free residual), and an online rotation of the inputs of the Linears whose inputs no fold reaches
    (attention output and MLP down projections). `hadamard_size` 0: the format's block size for MX/NV
    formats (block-wise Hadamard), else the largest power of two dividing the dimension. `kv_rotation`, when
    the spec quantizes the KV cache: queries, keys and values rotated per head by a Hadamard matrix of the
    head dimension (folded into the qkv projection, its inverse into the attention output), so the cached
    K and V are quantized rotated."""

    spec: QuantSpec | str = "W4A4"
    hadamard_size: int = 0
    online: bool = True
    signs_seed: int | None = 0
    gptq: GPTQ | None = None
    kv_rotation: bool = True

    def __post_init__(self) -> None:
        _resolve(self)
        check_positive("rotation.hadamard_size", self.hadamard_size, allow_zero=True)
        if self.hadamard_size and not is_power_of_two(self.hadamard_size):
            raise ConfigError(f"rotation.hadamard_size must be 0 or a power of two, got {self.hadamard_size}")
        if self.gptq is not None:
            _check_gptq_grid(self.spec, self.gptq)


@dataclass(frozen=True)
class LLMInt8Config:
    """LLM.int8() (Dettmers et al. 2022): vector-wise INT8 (per-token activation, per-row weight absmax
    scales) with the input columns holding any |x| >= threshold computed in 16 bits.

    outlier_weights: `16bit` multiplies the outlier columns with the 16-bit weights (the paper's
    decomposition; the 16-bit weights are kept), `int8` with the INT8-dequantized weights (what bitsandbytes
    does, so only INT8 weights are stored)."""

    threshold: float = 6.0
    outlier_dtype: str = "fp16"
    outlier_weights: str = "16bit"
    lm_head: bool = False

    def __post_init__(self) -> None:
        check_positive("llm_int8.threshold", self.threshold)
        check_choice("llm_int8.outlier_dtype", self.outlier_dtype, ("fp16", "bf16"))
        check_choice("llm_int8.outlier_weights", self.outlier_weights, ("16bit", "int8"))

    @property
    def spec(self) -> QuantSpec:
        """The spec this method implies (vector-wise INT8 weights and activations)."""
        return QuantSpec(name="W8A8-int8()", weight="int8", activation="int8", lm_head=self.lm_head)


@dataclass(frozen=True)
class SearchConfig:
    """Searched minifloat weights (LLM-FP4, ZeroQuant-FP; tradeoffs.quant.search): per layer or channel, the
    exponent/mantissa split of the spec's weight width and the clipping ratio with the lowest weight (or layer
    output) error, in the spec's scale layout; activations and KV cache as the spec says (round-to-nearest)."""

    spec: QuantSpec | str = "W4A16"
    search: FormatSearch = field(default_factory=FormatSearch)

    def __post_init__(self) -> None:
        _resolve(self)
        check_search(self.spec.weight_format, self.search)


MethodConfig = RTNConfig | GPTQConfig | SmoothQuantConfig | RotationConfig | LLMInt8Config | SearchConfig
METHODS: dict[str, type] = {
    "rtn": RTNConfig,
    "gptq": GPTQConfig,
    "smoothquant": SmoothQuantConfig,
    "rotation": RotationConfig,
    "llm_int8": LLMInt8Config,
    "search": SearchConfig,
}
NEEDS_CALIBRATION = (GPTQConfig, SmoothQuantConfig)


def method_config(name: str, **values) -> MethodConfig:
    """The config of method `name` (rtn, gptq, smoothquant, rotation, llm_int8, search) from plain values: `spec`
    a spec name or QuantSpec, `gptq` a dict of GPTQ settings, `search` a dict of FormatSearch settings."""
    check_choice("method", name, METHODS)
    cls = METHODS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = set(values) - set(valid)
    if unknown:
        raise ConfigError(f"method {name}: unknown keys {sorted(unknown)}; valid keys: {valid}")
    for key, settings_cls in (("gptq", GPTQ), ("search", FormatSearch)):
        if isinstance(values.get(key), dict):
            settings = [f.name for f in dataclasses.fields(settings_cls)]
            unknown = set(values[key]) - set(settings)
            if unknown:
                raise ConfigError(f"method {name}: unknown {key} keys {sorted(unknown)}; valid keys: {settings}")
            values[key] = settings_cls(**values[key])
    return cls(**values)


def needs_calibration(config: MethodConfig) -> bool:
    """Whether the method reads calibration data (GPTQ, SmoothQuant, any method running GPTQ, a search of the
    output error)."""
    if isinstance(config, SearchConfig):
        return config.search.objective == "output"
    return isinstance(config, NEEDS_CALIBRATION) or getattr(config, "gptq", None) is not None
