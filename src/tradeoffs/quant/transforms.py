"""Function-preserving transforms of a decoder's weights: SmoothQuant's migration of activation scale into
the weights, and outlier injection (both fold a per-channel factor into a norm's gain and the inverse into
the Linears reading that norm's output)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_positive
from tradeoffs.quant.structure import Trace, decoder_blocks, is_norm, trace


def probe_input(model: nn.Module) -> Tensor:
    """A short token sequence to trace the model with."""
    device = next(model.parameters()).device
    return torch.zeros((1, 4), dtype=torch.long, device=device)


def norm_readers(model: nn.Module, layers: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """norm name -> names of the Linears reading its output, for the norms inside the decoder blocks; with
    `layers`, only norms read by one of them (ConfigError naming the valid choices for a Linear no norm
    feeds)."""
    traced: Trace = trace(model, probe_input(model))
    inside = {id(m) for m in decoder_blocks(model).modules()}
    readers = {norm: names for norm, names in traced.readers().items() if id(model.get_submodule(norm)) in inside}
    if not layers:
        return readers
    fed = {name for names in readers.values() for name in names}
    missing = [name for name in layers if name not in fed]
    if missing:
        raise ConfigError(
            f"smoothquant.layers: {missing} have no preceding norm to fold the smoothing into; valid choices: "
            f"{', '.join(sorted(fed))}"
        )
    return {norm: names for norm, names in readers.items() if set(names) & set(layers)}


def check_pairs(model: nn.Module, pairs: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """Given norm -> reader pairs checked against the model: each norm a norm module, each reader an nn.Linear
    taking the norm's width (ConfigError naming `smoothquant.pairs` and the valid choices)."""
    modules = dict(model.named_modules())
    norms = [name for name, m in modules.items() if name and is_norm(m)]
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    for norm, readers in pairs.items():
        if norm not in norms:
            raise ConfigError(f"smoothquant.pairs: '{norm}' is not a norm of the model; valid choices: {norms}")
        width = modules[norm].weight.shape[0]
        bad = [r for r in readers if r not in linears or modules[r].in_features != width]
        if bad or not readers:
            raise ConfigError(
                f"smoothquant.pairs: {norm} ({width} channels) needs the nn.Linears reading its output, got "
                f"{bad or 'none'}; valid choices: {[n for n in linears if modules[n].in_features == width]}"
            )
    return {norm: list(readers) for norm, readers in pairs.items()}


@torch.no_grad()
def scale_channels(model: nn.Module, norm_name: str, readers: list[str], factor: Tensor) -> None:
    """Multiply the norm's output channels by `factor` (its gain and bias) and divide the readers' input
    columns by it: the function is unchanged."""
    norm = model.get_submodule(norm_name)
    norm.weight.mul_(factor.to(norm.weight.dtype))
    if getattr(norm, "bias", None) is not None:
        norm.bias.mul_(factor.to(norm.bias.dtype))
    for name in readers:
        weight = model.get_submodule(name).weight
        weight.div_(factor.to(weight.dtype))


@torch.no_grad()
def input_channel_amax(model: nn.Module, norms: list[str], batches: list[Tensor]) -> dict[str, Tensor]:
    """Per norm, the max |output| of each channel over every token of the calibration batches."""
    amax: dict[str, Tensor] = {}
    handles = []
    for name in norms:

        def keep(_m, _i, out, name=name):
            current = out.detach().abs().reshape(-1, out.shape[-1]).amax(dim=0).float()
            amax[name] = current if name not in amax else torch.maximum(amax[name], current)

        handles.append(model.get_submodule(name).register_forward_hook(keep))
    try:
        for idx in batches:
            model(idx)
    finally:
        for handle in handles:
            handle.remove()
    return amax


def smoothing_factors(activation_amax: Tensor, weight_amax: Tensor, alpha: float) -> Tensor:
    """SmoothQuant's s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), 1 where either maximum is zero."""
    s = activation_amax.pow(alpha) / weight_amax.pow(1 - alpha)
    valid = (activation_amax > 0) & (weight_amax > 0) & torch.isfinite(s)
    return torch.where(valid, s, torch.ones_like(s)).clamp(min=1e-5)


@torch.no_grad()
def smooth(
    model: nn.Module,
    alpha: float,
    batches: list[Tensor],
    layers: tuple[str, ...] = (),
    pairs: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Tensor]:
    """Apply SmoothQuant to the norm-fed Linears (or those reading the same norm as one of `layers`; or, given
    `pairs` of norm -> the Linears reading it, to those, in any module): X / s folded into the norm, W * s into
    its readers. Returns the factors per norm."""
    readers = check_pairs(model, pairs) if pairs else norm_readers(model, layers)
    amax = input_channel_amax(model, list(readers), batches)
    factors = {}
    for norm, names in readers.items():
        weight_amax = torch.stack([model.get_submodule(n).weight.detach().abs().amax(dim=0) for n in names])
        s = smoothing_factors(amax[norm], weight_amax.amax(dim=0).float(), alpha)
        scale_channels(model, norm, names, 1.0 / s)
        factors[norm] = s
    return factors


@dataclass(frozen=True)
class OutlierConfig:
    """Function-preserving outlier injection: in every norm inside the decoder blocks, the gain of `channels`
    channels (the same ones in every block, drawn with `seed`, or given as indices) is multiplied by
    `magnitude` and the matching input columns of the Linears reading it are divided by it."""

    magnitude: float = 1.0
    channels: int | tuple[int, ...] = 4
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive("outliers.magnitude", self.magnitude)
        if isinstance(self.channels, int):
            check_positive("outliers.channels", self.channels)


def outlier_channels(config: OutlierConfig, width: int) -> list[int]:
    """The channel indices the injection scales, for a residual stream of `width` channels."""
    if isinstance(config.channels, int):
        if config.channels > width:
            raise ConfigError(f"outliers.channels={config.channels} exceeds the {width} channels of the model")
        generator = torch.Generator().manual_seed(config.seed)
        return sorted(torch.randperm(width, generator=generator)[: config.channels].tolist())
    bad = [c for c in config.channels if not 0 <= c < width]
    if bad:
        raise ConfigError(f"outliers.channels: {bad} out of range for {width} channels (valid: 0..{width - 1})")
    return sorted(config.channels)


@torch.no_grad()
def inject_outliers(model: nn.Module, config: OutlierConfig) -> list[int]:
    """Inject activation outliers (OutlierConfig) in place; returns the scaled channels."""
    readers = norm_readers(model)
    if not readers:
        raise ValueError(f"inject_outliers: no norm feeding a Linear in {type(model).__name__}")
    width = model.get_submodule(next(iter(readers))).weight.shape[0]
    channels = outlier_channels(config, width)
    factor = torch.ones(width)
    factor[channels] = config.magnitude
    for norm, names in readers.items():
        scale_channels(model, norm, names, factor)
    return channels
