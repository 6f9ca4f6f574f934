"""SmoothQuant (Xiao et al. 2023): activation scale migrated into the weights (tradeoffs.quant.transforms.smooth),
then the spec's weights by round-to-nearest or GPTQ and its activations per forward. With explicit norm -> Linear
pairs it works on any nn.Module; without them the pairs are found by tracing a language model's forward."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from tradeoffs.errors import ConfigError
from tradeoffs.quant.api import QuantizeResult, register_quantize_handler
from tradeoffs.quant.gptq import GPTQ, check_blocks, check_grid, quantize_weights
from tradeoffs.quant.layers import make_targets_quantized
from tradeoffs.quant.spec import QuantSpec, get_spec, resolve_spec, spec_names
from tradeoffs.quant.structure import has_blocks
from tradeoffs.quant.transforms import check_pairs, norm_readers, smooth


@dataclass(frozen=True)
class SmoothQuantConfig:
    """SmoothQuant: per input channel j, s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) from calibration
    activations, X / s folded into the preceding norm and W * s into the Linear; then the spec's weights (RTN,
    or GPTQ with `gptq`) and activations. Only Linears fed by a norm can be smoothed: `layers` names them
    (default: all of them, found by tracing the model), or `pairs` gives each norm's readers (norm name -> names
    of the Linears reading its output) for a module that cannot be traced."""

    spec: QuantSpec | str = "W8A8"
    alpha: float = 0.5
    layers: tuple[str, ...] = ()
    gptq: GPTQ | None = None
    pairs: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        resolve_spec(self)
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "pairs", {norm: tuple(readers) for norm, readers in self.pairs.items()})
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"smoothquant.alpha must be in [0, 1], got {self.alpha}")
        if self.spec.weight_only:
            activation = [name for name in spec_names() if not get_spec(name).weight_only]
            raise ConfigError(
                f"smoothquant.spec: {self.spec.label} leaves activations unquantized, which smoothing exists "
                f"for. Valid choices: {', '.join(activation)}"
            )
        if self.layers and self.pairs:
            raise ConfigError("smoothquant: give `layers` (traced) or `pairs` (explicit), not both")
        if self.gptq is not None:
            check_grid(self.spec, self.gptq)

    @property
    def needs_calibration(self) -> bool:
        return True


def _check(model: nn.Module, config: SmoothQuantConfig) -> None:
    if config.pairs:
        check_pairs(model, config.pairs)
    elif not has_blocks(model):
        raise ConfigError(
            f"smoothquant.pairs: {type(model).__name__} has no decoder blocks whose norms a traced forward on token "
            "ids would pair with their Linears; give `pairs` (norm name -> names of the Linears reading its output)"
        )
    else:
        norm_readers(model, config.layers)
    if config.gptq is not None:
        check_blocks(model, "smoothquant.gptq")


@register_quantize_handler(SmoothQuantConfig, check=_check)
def _quantize(
    model: nn.Module,
    config: SmoothQuantConfig,
    targets: dict[str, nn.Linear],
    batches: list[Tensor],
    result: QuantizeResult,
) -> None:
    spec = config.spec
    smooth(model, config.alpha, batches, config.layers, config.pairs)
    make_targets_quantized(targets, spec.activation_format, spec.weight_format)
    quantize_weights(model, targets, spec.weight_format, config.gptq, batches)
