"""Model scaling strategies (Dollár, Singh and Girshick, "Fast and Accurate Model Scaling", 2021): a base
model scaled so that its FLOPs grow by a factor s, along width, depth, a third axis (the GPT's context,
the CNN's input resolution) or all of them (compound), with exact counted parameters, FLOPs and activations.

A strategy gives each axis a share of the FLOPs growth (shares sum to 1); an axis whose FLOPs grow as
its size^degree (width 2; depth 1; context 1 for a whole sequence's dense FLOPs; resolution 2) is scaled by
s^(share / degree), the paper's rule (pycls' scaling_factors). Compound with `alpha` gives width the share
alpha and depth and the third axis (1 - alpha) / 2 each; alpha = 0.8 is the paper's fast compound scaling
(dWr), alpha = 1/3 the uniform one. Axes are integers (d_model a multiple of n_head, d_ff keeping its ratio):
every axis is rounded, then the finest one (width when it scales, otherwise the only one) is chosen among its
valid values to bring the counted FLOPs closest to s times the base's, so strategies compare at matched
FLOPs; `flops_factor` is the growth achieved.

Counts per sample (a sequence of context_length tokens, or an image): forward FLOPs (tradeoffs.models'
convention: 2 N + attention per token, no lm_head), activations (GPT: the outputs of every Linear in the
blocks, the lm_head's logits left out as its FLOPs are; CNN: every convolution's output, as the paper), and
parameters (GPT: non-embedding N, and the total).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.models import GPT, ModelConfig, activation_counts, count_parameters, flops_per_token
from tradeoffs.models.cnn import CNN, CNNConfig, count_cnn, synthetic_images

FAST_COMPOUND_ALPHA = 0.8


@dataclass(frozen=True)
class Axis:
    """A scalable axis: the config field, the degree of its FLOPs growth, and the step of valid values."""

    field: str
    degree: int
    step: Callable[[Any], int]


@dataclass(frozen=True)
class Counts:
    """Counted sizes of one model, per sample."""

    parameters: int
    total_parameters: int
    flops: int
    activations: int


@dataclass(frozen=True)
class Family:
    """How a model family scales: its axes (the third is context or resolution), how a config takes new
    axis values, and its counts."""

    axes: Mapping[str, Axis]
    apply: Callable[[Any, dict[str, int]], Any]
    counts: Callable[[Any], Counts]


def _gpt_apply(base: ModelConfig, values: dict[str, int]) -> ModelConfig:
    d_model = values["width"]
    return replace(
        base,
        n_layer=values["depth"],
        d_model=d_model,
        d_ff=max(1, round(base.d_ff * d_model / base.d_model)),
        context_length=values["context"],
    )


def _gpt_counts(config: ModelConfig) -> Counts:
    parameters = count_parameters(config)
    per_token = activation_counts(config)["linear_outputs"] - config.vocab_size
    n_ctx = config.context_length
    return Counts(
        parameters.non_embedding, parameters.total, n_ctx * flops_per_token(config, training=False), n_ctx * per_token
    )


def _cnn_apply(base: CNNConfig, values: dict[str, int]) -> CNNConfig:
    return replace(base, depth=values["depth"], width=values["width"], image_size=values["resolution"])


def _cnn_counts(config: CNNConfig) -> Counts:
    counts = count_cnn(config)
    return Counts(counts.parameters, counts.parameters, counts.flops, counts.activations)


GPT_FAMILY = Family(
    axes={
        "width": Axis("d_model", 2, lambda c: c.n_head),
        "depth": Axis("n_layer", 1, lambda c: 1),
        "context": Axis("context_length", 1, lambda c: 1),
    },
    apply=_gpt_apply,
    counts=_gpt_counts,
)
CNN_FAMILY = Family(
    axes={
        "width": Axis("width", 2, lambda c: 1),
        "depth": Axis("depth", 1, lambda c: 1),
        "resolution": Axis("image_size", 2, lambda c: 1),
    },
    apply=_cnn_apply,
    counts=_cnn_counts,
)


def family(config: ModelConfig | CNNConfig) -> Family:
    """The scaling family of a config: the GPT family or the CNN."""
    if isinstance(config, CNNConfig):
        return CNN_FAMILY
    if isinstance(config, ModelConfig) and config.family == "gpt":
        return GPT_FAMILY
    raise ConfigError(f"model: scaling strategies need a GPT (model.family=gpt) or a CNNConfig, got {config!r}")


def strategies(config: ModelConfig | CNNConfig) -> tuple[str, ...]:
    """The strategy names for a config: each axis alone, and compound."""
    return (*family(config).axes, "compound")


def shares(config: ModelConfig | CNNConfig, strategy: str, alpha: float = FAST_COMPOUND_ALPHA) -> dict[str, float]:
    """The share of the FLOPs growth each axis takes under a strategy."""
    check_choice("strategy", strategy, strategies(config))
    axes = list(family(config).axes)
    if strategy != "compound":
        return {axis: float(axis == strategy) for axis in axes}
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha: the width share of compound scaling must be in [0, 1], got {alpha}")
    width, depth, third = axes
    return {width: alpha, depth: (1 - alpha) / 2, third: (1 - alpha) / 2}


def model_counts(config: ModelConfig | CNNConfig) -> Counts:
    """Parameters, forward FLOPs and activations per sample of a GPT or CNN config."""
    return family(config).counts(config)


@dataclass(frozen=True)
class ScaledModel:
    """One config of a scaling series, with its counts and the FLOPs growth it achieved over the base."""

    strategy: str
    factor: float
    config: ModelConfig | CNNConfig
    counts: Counts
    flops_factor: float

    def record(self) -> dict[str, Any]:
        """Flat values for a table: strategy, factor, flops_factor, the counts and each axis's size."""
        axes = {name: getattr(self.config, axis.field) for name, axis in family(self.config).axes.items()}
        return {
            "strategy": self.strategy,
            "factor": self.factor,
            "flops_factor": self.flops_factor,
            "parameters": self.counts.parameters,
            "total_parameters": self.counts.total_parameters,
            "flops": self.counts.flops,
            "activations": self.counts.activations,
            **axes,
        }


def _valid(value: float, step: int) -> int:
    return max(step, step * round(value / step))


def scale(
    config: ModelConfig | CNNConfig, strategy: str, factor: float, alpha: float = FAST_COMPOUND_ALPHA
) -> ScaledModel:
    """`config` scaled by `factor` in FLOPs along `strategy` (width, depth, context or resolution, compound),
    matched to the counted FLOPs as closely as the integer axes allow."""
    check_positive("factor", factor)
    scaling = family(config)
    weights = shares(config, strategy, alpha)
    base_flops = scaling.counts(config).flops
    values = {
        name: _valid(getattr(config, axis.field) * factor ** (weights[name] / axis.degree), axis.step(config))
        for name, axis in scaling.axes.items()
    }
    finest = "width" if weights["width"] > 0 else max(weights, key=weights.get)
    step, nominal = scaling.axes[finest].step(config), values[finest]

    def mismatch(value: int) -> float:
        return abs(
            math.log(scaling.counts(scaling.apply(config, {**values, finest: value})).flops / (factor * base_flops))
        )

    low, high = max(step, _valid(nominal / 2, step)), _valid(nominal * 2, step)
    values[finest] = min(range(low, high + step, step), key=lambda v: (mismatch(v), v))
    scaled = replace(scaling.apply(config, values), name=f"{config.name}-{strategy}x{factor:g}")
    counts = scaling.counts(scaled)
    return ScaledModel(strategy, float(factor), scaled, counts, counts.flops / base_flops)


def scaling_series(
    config: ModelConfig | CNNConfig,
    factors: Sequence[float] = (1, 2, 4, 8, 16),
    strategy_names: Sequence[str] | None = None,
    alpha: float = FAST_COMPOUND_ALPHA,
) -> list[ScaledModel]:
    """Every strategy (default: all of the family) at every factor."""
    return [scale(config, name, s, alpha) for name in (strategy_names or strategies(config)) for s in factors]


def build(config: ModelConfig | CNNConfig) -> nn.Module:
    """The model of a scaled config (GPT or CNN); seed torch first for deterministic weights."""
    return CNN(config) if isinstance(config, CNNConfig) else GPT(config)


def synthetic_batch(
    config: ModelConfig | CNNConfig, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Inputs and targets for one training step of `build(config)`: random tokens (GPT) or the CNN's
    synthetic images; `model(*batch)` returns (output, loss) for both."""
    if isinstance(config, CNNConfig):
        return synthetic_images(config, batch_size, generator)
    tokens = torch.randint(config.vocab_size, (batch_size, config.context_length + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]
