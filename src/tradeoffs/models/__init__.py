"""Models: the project's GPT family (gpt.py), Hugging Face causal LMs from a local directory (hf.py), and
exact parameter, FLOP and activation counts (counting.py). See docs/models.md."""

from __future__ import annotations

from torch import nn

from tradeoffs.models.counting import (
    ParameterCount,
    activation_counts,
    count_parameters,
    flops_breakdown,
    flops_per_token,
    module_parameter_count,
)
from tradeoffs.models.gpt import GPT, KVCache, ModelConfig
from tradeoffs.models.hf import HFCausalLM, load_hf_model


def build_model(config: ModelConfig) -> nn.Module:
    """The model a ModelConfig names: GPT(config), or the Hugging Face model at config.path (family=hf).
    Weights come from torch's global generator: seed it first for a deterministic initialisation."""
    if config.family == "hf":
        return load_hf_model(config.path)
    return GPT(config)


__all__ = [
    "GPT",
    "HFCausalLM",
    "KVCache",
    "ModelConfig",
    "ParameterCount",
    "activation_counts",
    "build_model",
    "count_parameters",
    "flops_breakdown",
    "flops_per_token",
    "load_hf_model",
    "module_parameter_count",
]
