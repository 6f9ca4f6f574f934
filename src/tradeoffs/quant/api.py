"""The public verb: quantize_(model, config, calibration) quantizes a model in place, torchao-style."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError
from tradeoffs.formats import FormatSpec, fake_quant
from tradeoffs.quant.config import (
    GPTQConfig,
    LLMInt8Config,
    MethodConfig,
    RotationConfig,
    RTNConfig,
    SearchConfig,
    SmoothQuantConfig,
    needs_calibration,
)
from tradeoffs.quant.layers import head_dims, kv_cache_hooks, make_llm_int8, make_quantized
from tradeoffs.quant.rotation import hadamard_size, is_gpt, kv_head_dim, rotate_gpt
from tradeoffs.quant.search import SearchResult, search_quantize
from tradeoffs.quant.sequential import calibrated_model, gptq_model
from tradeoffs.quant.spec import QuantSpec
from tradeoffs.quant.structure import as_linears, target_linears
from tradeoffs.quant.transforms import norm_readers, smooth

METHOD_TYPES = (RTNConfig, GPTQConfig, SmoothQuantConfig, RotationConfig, LLMInt8Config, SearchConfig)


@dataclass
class QuantizeResult:
    """What quantize_ did: the quantized Linears by name with their bits per weight, and the method; for a format
    search, what it chose per Linear."""

    method: str
    spec: QuantSpec
    bits: dict[str, float] = field(default_factory=dict)
    searched: dict[str, SearchResult] = field(default_factory=dict)
    hooks: list = field(default_factory=list, repr=False)  # KV cache hooks (remove() to undo)


def _check_divides(key: str, fmt: FormatSpec | None, targets: dict[str, nn.Linear]) -> None:
    if fmt is None or fmt.granularity != "block":
        return
    bad = {name: m.in_features for name, m in targets.items() if m.in_features % fmt.block_size}
    if bad:
        raise ConfigError(
            f"{key}: group/block size {fmt.block_size} of format '{fmt.name or fmt.element}' does not divide the "
            f"input features of {bad}; choose a group size dividing {sorted(set(bad.values()))}"
        )


def check_config(model: nn.Module, config: MethodConfig, calibration: Tensor | None) -> dict[str, nn.Linear]:
    """Validate config against the model and the calibration data before any work: ConfigError naming the
    key and the valid choices. Returns the Linears the spec quantizes."""
    if not isinstance(config, METHOD_TYPES):
        raise ConfigError(
            f"quantize_: config of type {type(config).__name__}; valid choices: "
            f"{', '.join(t.__name__ for t in METHOD_TYPES)}"
        )
    spec = config.spec
    targets = target_linears(model, spec.lm_head)
    if not targets:
        raise ConfigError(f"quantize_: {type(model).__name__} has no nn.Linear inside its decoder blocks")
    _check_divides("spec.weight", spec.weight_format, targets)
    _check_divides("spec.activation", spec.activation_format, targets)
    kv = spec.kv_cache_format
    if kv is not None and kv.granularity == "block" and any(d % kv.block_size for d in head_dims(model)):
        raise ConfigError(
            f"spec.kv_cache: block size {kv.block_size} of '{kv.name or kv.element}' does not divide the head "
            f"dimension {sorted(head_dims(model))}; choose a per-token (channel) format or a smaller block"
        )
    if needs_calibration(config) and (calibration is None or calibration.ndim != 2 or calibration.dtype != torch.long):
        raise ConfigError(
            f"calibration: {type(config).__name__} needs calibration token ids, an int64 tensor (samples, "
            f"tokens); got {None if calibration is None else (calibration.dtype, tuple(calibration.shape))}"
        )
    if isinstance(config, SmoothQuantConfig):
        norm_readers(model, config.layers)
    if isinstance(config, RotationConfig):
        if not is_gpt(model):
            raise ConfigError(
                f"rotation: supported for tradeoffs.models.GPT (wte, wpe, blocks, ln_f, lm_head); got "
                f"{type(model).__name__}. Valid methods for it: rtn, gptq, smoothquant, llm_int8"
            )
        formats = [f for f in (spec.weight_format, spec.activation_format) if f is not None]
        hadamard_size(model.wte.weight.shape[1], config.hadamard_size, formats)
        if config.kv_rotation and kv is not None:
            kv_head_dim(model)
    return targets


def _rtn(targets: dict[str, nn.Linear], fmt: FormatSpec) -> None:
    with torch.no_grad():
        for linear in targets.values():
            linear.weight.copy_(fake_quant(linear.weight.float(), fmt, axis=-1).to(linear.weight.dtype))


def _search(
    model: nn.Module, targets: dict[str, nn.Linear], config: SearchConfig, batches: list[Tensor]
) -> dict[str, SearchResult]:
    """Searched weights for every target (output objective: each layer's Hessian as GPTQ's driver collects it)."""
    fmt, names, found = config.spec.weight_format, {id(m): n for n, m in targets.items()}, {}

    def quantize(linear: nn.Linear, h: Tensor | None) -> Tensor:
        found[names[id(linear)]] = result = search_quantize(linear.weight, fmt, config.search, h)
        linear.selector_bits = result.selector_bits / linear.in_features
        return result.weight

    if config.search.objective == "output":
        calibrated_model(model, targets, batches, quantize)
    else:
        for linear in targets.values():
            linear.weight.copy_(quantize(linear, None).to(linear.weight.dtype))
    return {name: found[name] for name in targets}


def quantize_(
    model: nn.Module, config: MethodConfig, calibration: Tensor | None = None, *, batch_size: int = 8
) -> QuantizeResult:
    """Quantize `model` in place by `config` (RTNConfig, GPTQConfig, SmoothQuantConfig, RotationConfig,
    LLMInt8Config, SearchConfig); `calibration` (samples, tokens) int64 token ids for the methods that calibrate, run in
    batches of `batch_size` samples. Works on tradeoffs.models.GPT and Hugging Face causal LMs (rotation:
    GPT only). Returns what was quantized, with bits per weight including scales."""
    as_linears(model)
    targets = check_config(model, config, calibration)
    model.eval()
    spec = config.spec
    batches = list(calibration.split(batch_size)) if calibration is not None else []
    method = type(config).__name__.removesuffix("Config").lower()
    result = QuantizeResult(method, spec)
    if isinstance(config, LLMInt8Config):
        for name, linear in targets.items():
            make_llm_int8(linear, config.threshold, config.outlier_dtype, config.outlier_weights)
            result.bits[name] = linear.bits_per_weight()
        return result
    with torch.no_grad():
        if isinstance(config, SmoothQuantConfig):
            smooth(model, config.alpha, batches, config.layers)
        rotations: dict[str, Tensor] = {}
        if isinstance(config, RotationConfig):
            formats = [f for f in (spec.weight_format, spec.activation_format) if f is not None]
            size = hadamard_size(
                model.wte.weight.shape[1] if hasattr(model, "wte") else 0, config.hadamard_size, formats
            )
            kv_rotation = config.kv_rotation and spec.kv_cache_format is not None
            rotations = rotate_gpt(model, size, config.signs_seed, config.online, formats, kv_rotation)
        for name, linear in targets.items():
            make_quantized(linear, spec.activation_format, spec.weight_format, rotations.get(name))
        gptq = config.gptq if isinstance(config, GPTQConfig) else getattr(config, "gptq", None)
        if isinstance(config, SearchConfig):
            result.searched = _search(model, targets, config, batches)
        elif gptq is None:
            _rtn(targets, spec.weight_format)
        else:
            gptq_model(model, targets, spec.weight_format, gptq, batches)
    if spec.kv_cache_format is not None:
        try:
            result.hooks = kv_cache_hooks(model, spec.kv_cache_format)
        except ValueError as error:
            raise ConfigError(f"spec.kv_cache: {error}") from None
    result.bits = {name: linear.bits_per_weight() for name, linear in targets.items()}
    return result
