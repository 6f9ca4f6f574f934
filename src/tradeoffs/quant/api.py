"""The public verb: quantize_(model, config, calibration) quantizes a model in place, torchao-style.

Each PTQ method is one module of tradeoffs.quant holding its config dataclass and its handler, registered by
config type with `register_quantize_handler`; quantize_ looks the handler up by the config's type. A method's
name is its module's (rtn, gptq, ...); `METHODS` maps the names to the config types, filled by registration.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.formats import FormatSpec
from tradeoffs.quant.layers import head_dims, kv_cache_hooks
from tradeoffs.quant.spec import QuantSpec
from tradeoffs.quant.structure import as_linears, target_linears


@dataclass
class SearchResult:
    """What a format search (tradeoffs.quant.search) chose for one Linear: the searched weight and, per output row,
    the element and the clipping ratio."""

    weight: Tensor
    elements: list[str]  # the candidates, in order
    element_index: Tensor  # (rows,) index into `elements`
    clip_ratio: Tensor  # (rows,)
    error: float  # the objective at the choice, summed over rows
    element_per_row: bool = False  # search.element_per == "channel": each row records its element

    @property
    def selector_bits(self) -> float:
        """Bits per row that record the element choice (a per-layer choice costs bits per tensor: 0 here)."""
        return float(math.ceil(math.log2(len(self.elements)))) if self.element_per_row else 0.0

    def element_shares(self) -> dict[str, float]:
        """The fraction of rows that chose each candidate element."""
        counts = torch.bincount(self.element_index, minlength=len(self.elements)).float()
        return {name: float(c / counts.sum()) for name, c in zip(self.elements, counts, strict=True)}


@dataclass
class QuantizeResult:
    """What quantize_ did: the quantized Linears by name with their bits per weight, and the method; for a format
    search, what it chose per Linear."""

    method: str
    spec: QuantSpec
    bits: dict[str, float] = field(default_factory=dict)
    searched: dict[str, SearchResult] = field(default_factory=dict)
    hooks: list = field(default_factory=list, repr=False)  # KV cache hooks (remove() to undo)


# (model, config, target Linears by name, calibration batches, the result to record into): quantizes in place
Handler = Callable[[nn.Module, Any, dict[str, nn.Linear], list[Tensor], QuantizeResult], None]
Check = Callable[[nn.Module, Any], None]  # (model, config): ConfigError for what the model cannot take


@dataclass(frozen=True)
class Method:
    """A registered PTQ method: its name, config type, handler, and the check of a model before any work."""

    name: str
    config_type: type
    handler: Handler
    check: Check | None = None


_HANDLERS: dict[type, Method] = {}
METHODS: dict[str, type] = {}  # method name -> config type, in registration order


def register_quantize_handler(config_type: type, *, check: Check | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of `config_type` (a frozen dataclass with a `spec`), under
    its module's name; `check(model, config)` runs before any work. A config that reads calibration data says
    so with a `needs_calibration` property."""

    def register(handler: Handler) -> Handler:
        name = handler.__module__.rpartition(".")[2]
        if METHODS.get(name, config_type) is not config_type:
            raise ValueError(f"quantize_: method '{name}' is registered for {METHODS[name].__name__} already")
        _HANDLERS[config_type] = Method(name, config_type, handler, check)
        METHODS[name] = config_type
        return handler

    return register


def registered_method(config: object) -> Method:
    """The registered method of a config (ConfigError naming the valid config types)."""
    method = _HANDLERS.get(type(config))
    if method is None:
        raise ConfigError(
            f"quantize_: config of type {type(config).__name__}; valid choices: "
            f"{', '.join(t.__name__ for t in METHODS.values())}"
        )
    return method


def method_config(name: str, **values) -> Any:
    """The config of method `name` (a key of METHODS) from plain values: `spec` a spec name or QuantSpec, nested
    settings (`gptq`, `search`) as dicts, tuples as lists."""
    check_choice("method", name, METHODS)
    return _build(METHODS[name], values, f"method {name}", "")


def _build(cls: type, values: dict, where: str, key: str) -> Any:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = set(values) - set(valid)
    if unknown:
        raise ConfigError(f"{where}: unknown {key + ' ' if key else ''}keys {sorted(unknown)}; valid keys: {valid}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], value, where, name) for name, value in values.items()})


def _value(hint: Any, value: Any, where: str, key: str) -> Any:
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    nested = [o for o in options if dataclasses.is_dataclass(o)]
    if isinstance(value, dict) and len(nested) == 1:
        return _build(nested[0], value, where, key)
    if isinstance(value, list) and any(typing.get_origin(o) is tuple for o in options):
        return tuple(value)
    return value


def needs_calibration(config: object) -> bool:
    """Whether the method reads calibration data: its config's `needs_calibration`, False where it has none."""
    return bool(getattr(config, "needs_calibration", False))


def _check_divides(key: str, fmt: FormatSpec | None, targets: dict[str, nn.Linear]) -> None:
    if fmt is None or fmt.granularity != "block":
        return
    bad = {name: m.in_features for name, m in targets.items() if m.in_features % fmt.block_size}
    if bad:
        raise ConfigError(
            f"{key}: group/block size {fmt.block_size} of format '{fmt.name or fmt.element}' does not divide the "
            f"input features of {bad}; choose a group size dividing {sorted(set(bad.values()))}"
        )


def _check_calibration(model: nn.Module, config: object, calibration: Tensor | None) -> None:
    if not needs_calibration(config):
        return
    if any(isinstance(m, nn.Embedding) for m in model.modules()):
        if calibration is None or calibration.ndim != 2 or calibration.dtype != torch.long:
            raise ConfigError(
                f"calibration: {type(config).__name__} needs calibration token ids, an int64 tensor (samples, "
                f"tokens); got {None if calibration is None else (calibration.dtype, tuple(calibration.shape))}"
            )
    elif calibration is None or not calibration.is_floating_point():
        raise ConfigError(
            f"calibration: {type(config).__name__} needs calibration inputs, a floating tensor of what "
            f"{type(model).__name__} takes (samples first); got "
            f"{None if calibration is None else (calibration.dtype, tuple(calibration.shape))}"
        )


def check_config(model: nn.Module, config: Any, calibration: Tensor | None) -> dict[str, nn.Linear]:
    """Validate config against the model and the calibration data before any work: ConfigError naming the
    key and the valid choices. Returns the Linears the spec quantizes."""
    method = registered_method(config)
    spec = config.spec
    targets = target_linears(model, spec.lm_head)
    if not targets:
        raise ConfigError(f"quantize_: {type(model).__name__} has no nn.Linear to quantize")
    _check_divides("spec.weight", spec.weight_format, targets)
    _check_divides("spec.activation", spec.activation_format, targets)
    kv = spec.kv_cache_format
    if kv is not None and not head_dims(model):
        raise ConfigError(
            f"spec.kv_cache: {type(model).__name__} has no attention layout whose keys and values a hook can "
            "quantize (tradeoffs.models.GPT's `qkv`, Hugging Face's `k_proj`/`v_proj`); valid: kv_cache=''"
        )
    if kv is not None and kv.granularity == "block" and any(d % kv.block_size for d in head_dims(model)):
        raise ConfigError(
            f"spec.kv_cache: block size {kv.block_size} of '{kv.name or kv.element}' does not divide the head "
            f"dimension {sorted(head_dims(model))}; choose a per-token (channel) format or a smaller block"
        )
    _check_calibration(model, config, calibration)
    if method.check is not None:
        method.check(model, config)
    return targets


def quantize_(
    model: nn.Module, config: Any, calibration: Tensor | None = None, *, batch_size: int = 8
) -> QuantizeResult:
    """Quantize `model` in place by `config`, a registered method's config (RTNConfig, GPTQConfig, SmoothQuantConfig,
    RotationConfig, LLMInt8Config, SearchConfig: METHODS); `calibration` for the methods that calibrate, run in
    batches of `batch_size` samples: int64 token ids (samples, tokens) for a language model, else the module's
    inputs. Returns what was quantized, with bits per weight including scales."""
    method = registered_method(config)
    as_linears(model)
    targets = check_config(model, config, calibration)
    model.eval()
    batches = list(calibration.split(batch_size)) if calibration is not None else []
    result = QuantizeResult(method.name, config.spec)
    with torch.no_grad():
        method.handler(model, config, targets, batches, result)
    if config.spec.kv_cache_format is not None:
        try:
            result.hooks = kv_cache_hooks(model, config.spec.kv_cache_format)
        except ValueError as error:
            raise ConfigError(f"spec.kv_cache: {error}") from None
    result.bits = {name: linear.bits_per_weight() for name, linear in targets.items()}
    return result
