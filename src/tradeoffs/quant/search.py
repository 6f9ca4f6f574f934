"""Searched minifloat weights (LLM-FP4, ZeroQuant-FP): the exponent/mantissa split and the clipping ratio that
minimise a weight's quantization error, chosen per layer or per output channel.

For each candidate element of the weight format's width (E1M2, E2M1, E3M0 at 4 bits) and each clipping ratio r,
the weight is rounded with the format's own scales (tradeoffs.formats' compute_scales) multiplied by r
(round_with_scales): r < 1 clips the largest values to spend the grid on the rest. The error of each output row
is the squared weight error sum_j (q_j - w_j)^2 (objective `weight`), or the layer's output error over
calibration inputs, d H d^T with d = q - w and H = 2/n X^T X (objective `output`). The element is then chosen
per layer (the sum over rows) or per row, and the ratio per layer or per row given the element. The ratio
folds into the stored FP32 scale (no extra bits); a per-row element choice costs ceil(log2(candidates)) bits
per row. SearchConfig and its handler make the search a method of quantize_.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.formats import (
    FormatSpec,
    ScaleRule,
    Scales,
    compute_scales,
    get_format,
    parse_element,
    round_with_scales,
)
from tradeoffs.quant.api import QuantizeResult, SearchResult, register_quantize_handler
from tradeoffs.quant.layers import make_targets_quantized
from tradeoffs.quant.sequential import calibrated_model
from tradeoffs.quant.spec import QuantSpec, resolve_spec
from tradeoffs.quant.structure import require_blocks

SEARCH_UNITS = ("layer", "channel")
OBJECTIVES = ("weight", "output")
DEFAULT_CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)


@dataclass(frozen=True)
class FormatSearch:
    """What the search tries and how it chooses.

    elements: candidate minifloat elements (e.g. "e1m2", "e2m1", "e3m0"), all of the weight format's width;
    empty: every split EeMm of that width with e >= 1, no inf/NaN codes (the OCP FP4/FP6 convention).
    clip_ratios: multipliers of the format's absmax scales, each in (0, 1]. element_per / clip_per: one choice
    per `layer` (weight tensor) or per `channel` (output row). objective: `weight` (the weight's MSE) or
    `output` (the layer output's MSE over calibration inputs; needs calibration data).
    """

    elements: tuple[str, ...] = ()
    clip_ratios: tuple[float, ...] = DEFAULT_CLIP_RATIOS
    element_per: str = "layer"
    clip_per: str = "channel"
    objective: str = "weight"

    def __post_init__(self) -> None:
        check_choice("search.element_per", self.element_per, SEARCH_UNITS)
        check_choice("search.clip_per", self.clip_per, SEARCH_UNITS)
        check_choice("search.objective", self.objective, OBJECTIVES)
        object.__setattr__(self, "elements", tuple(self.elements))
        object.__setattr__(self, "clip_ratios", tuple(float(r) for r in self.clip_ratios))
        if not self.clip_ratios or any(not 0 < r <= 1 for r in self.clip_ratios):
            raise ConfigError(f"search.clip_ratios: need one or more ratios in (0, 1], got {list(self.clip_ratios)}")
        for name in self.elements:
            element = _candidate(name)
            if element.kind != "float":
                raise ConfigError(f"search.elements: '{name}' is not a minifloat; valid: eXmY names such as e2m1")


def _candidate(name: str):
    try:
        return parse_element(name, special="none")
    except ConfigError as error:
        raise ConfigError(f"search.elements: {error}") from None


def candidate_elements(bits: int) -> list[str]:
    """Every minifloat split of a `bits`-wide element (sign, e >= 1 exponent bits, the rest mantissa)."""
    if bits < 3:
        raise ConfigError(f"search: a {bits}-bit element leaves no exponent/mantissa split; need >= 3 bits")
    return [f"e{e}m{bits - 1 - e}" for e in range(1, bits)]


def check_search(fmt: FormatSpec | str, search: FormatSearch) -> list[str]:
    """Validate a search against the weight format it replaces the element of; returns the candidate elements.
    The format must have FP32 absmax scales of its own layout (tensor, channel or groups) and round to nearest."""
    fmt = get_format(fmt)
    label = fmt.name or fmt.element
    if (
        fmt.scale_format != "fp32"
        or fmt.tensor_scale
        or fmt.scale_rule != ScaleRule.absmax
        or fmt.rounding != "nearest"
    ):
        raise ConfigError(
            f"search: weight format '{label}' has {fmt.scale_format} {fmt.scale_rule} scales"
            f"{' with a tensor scale' if fmt.tensor_scale else ''}, rounding {fmt.rounding}; the search clips FP32 "
            "absmax scales with round-to-nearest: use an INT/minifloat weight with weight_granularity tensor, "
            "channel or group"
        )
    if search.clip_per == "channel" and fmt.granularity == "tensor":
        raise ConfigError(
            f"search.clip_per=channel gives each row a scale of its own, but weight format '{label}' has one scale "
            "per tensor; valid: clip_per=layer, or weight_granularity channel or group"
        )
    if fmt.is_cast:
        raise ConfigError(f"search: weight format '{label}' is a plain cast; valid: a 3- to 8-bit element")
    bits = fmt.element_format.bits
    names = list(search.elements) or candidate_elements(bits)
    wrong = {name: _candidate(name).bits for name in names if _candidate(name).bits != bits}
    if wrong:
        raise ConfigError(
            f"search.elements: {wrong} differ from the {bits} bits of weight format '{label}'; valid: "
            f"{', '.join(candidate_elements(bits))}"
        )
    return names


def _layout(fmt: FormatSpec, element: str) -> FormatSpec:
    return dataclasses.replace(fmt, name=f"{fmt.name or fmt.element}:{element}", element=element, special="none",
                               asymmetric=False, bias=-1)  # fmt: skip


def _clipped(scales: Scales, ratio: Tensor) -> Scales:
    """The scales times a ratio per row (rows: axis 0), or one ratio for all."""
    shape = (-1,) + (1,) * (scales.block_scale.ndim - 1)
    factor = ratio.reshape(shape) if ratio.numel() > 1 else ratio.reshape(())
    reciprocal = None if scales.reciprocal is None else scales.reciprocal / factor
    return dataclasses.replace(scales, block_scale=scales.block_scale * factor, reciprocal=reciprocal)


def _row_error(delta: Tensor, h: Tensor | None) -> Tensor:
    return (delta * delta).sum(-1) if h is None else ((delta @ h) * delta).sum(-1)


@torch.no_grad()
def search_quantize(
    weight: Tensor, fmt: FormatSpec | str, search: FormatSearch, hessian: Tensor | None = None
) -> SearchResult:
    """Quantize `weight` (rows, inputs), along its inputs, in the format `fmt` with the element and clipping
    ratio found by `search` (module docstring); `hessian` (inputs, inputs) is needed for objective `output`."""
    fmt = get_format(fmt)
    names = check_search(fmt, search)
    if weight.ndim != 2:
        raise ValueError(f"search_quantize: weight must be 2-d (rows, inputs), got shape {tuple(weight.shape)}")
    if search.objective == "output" and (hessian is None or hessian.shape != (weight.shape[1],) * 2):
        raise ConfigError(
            f"search.objective=output needs the layer's input Hessian ({weight.shape[1]} x {weight.shape[1]}); "
            "give calibration data, or use objective=weight"
        )
    w = weight.float()
    h = hessian.float() if search.objective == "output" else None
    ratios = torch.tensor(search.clip_ratios)
    rows = w.shape[0]
    errors = torch.empty(len(names), len(ratios), rows)
    scales = [compute_scales(w, _layout(fmt, name), axis=-1) for name in names]
    for c, base in enumerate(scales):
        for r, ratio in enumerate(ratios):
            errors[c, r] = _row_error(round_with_scales(w, _clipped(base, ratio)) - w, h)
    if search.clip_per == "channel":
        per_element, best_ratio = errors.min(dim=1)  # (candidates, rows)
    else:
        best = errors.sum(-1).argmin(dim=1)  # (candidates,)
        per_element = errors[torch.arange(len(names)), best]
        best_ratio = best[:, None].expand(-1, rows)
    if search.element_per == "channel":
        element_index = per_element.argmin(dim=0)
    else:
        element_index = per_element.sum(-1).argmin().expand(rows).clone()
    ratio_index = best_ratio.gather(0, element_index[None]).squeeze(0)
    clip_ratio = ratios[ratio_index]
    out = torch.empty_like(w)
    for c, base in enumerate(scales):
        chosen = element_index == c
        if chosen.any():
            out[chosen] = round_with_scales(w, _clipped(base, clip_ratio))[chosen]
    error = float(_row_error(out - w, h).sum())
    return SearchResult(out.to(weight.dtype), names, element_index, clip_ratio, error, search.element_per == "channel")


@dataclass(frozen=True)
class SearchConfig:
    """Searched minifloat weights (the method): per layer or channel, the exponent/mantissa split of the spec's
    weight width and the clipping ratio with the lowest weight (or layer output) error, in the spec's scale
    layout; activations and KV cache as the spec says (round-to-nearest)."""

    spec: QuantSpec | str = "W4A16"
    search: FormatSearch = field(default_factory=FormatSearch)

    def __post_init__(self) -> None:
        resolve_spec(self)
        check_search(self.spec.weight_format, self.search)

    @property
    def needs_calibration(self) -> bool:
        return self.search.objective == "output"


def _check(model: nn.Module, config: SearchConfig) -> None:
    if config.search.objective == "output":
        require_blocks(
            model,
            "search.objective=output",
            "each layer's output error is measured on its inputs as the layers quantized before it produce them",
        )


@register_quantize_handler(SearchConfig, check=_check)
def _quantize(
    model: nn.Module, config: SearchConfig, targets: dict[str, nn.Linear], batches: list[Tensor], result: QuantizeResult
) -> None:
    """Searched weights for every target (output objective: each layer's Hessian as GPTQ's driver collects it)."""
    spec = config.spec
    make_targets_quantized(targets, spec.activation_format, spec.weight_format)
    fmt, names, found = spec.weight_format, {id(m): n for n, m in targets.items()}, {}

    def quantize(linear: nn.Linear, h: Tensor | None) -> Tensor:
        found[names[id(linear)]] = chosen = search_quantize(linear.weight, fmt, config.search, h)
        linear.selector_bits = chosen.selector_bits / linear.in_features
        return chosen.weight

    if config.search.objective == "output":
        calibrated_model(model, targets, batches, quantize)
    else:
        for linear in targets.values():
            linear.weight.copy_(quantize(linear, None).to(linear.weight.dtype))
    result.searched = {name: found[name] for name in targets}
