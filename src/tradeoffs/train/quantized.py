"""Emulated low-precision Linear layers: the three GEMMs of a Linear (forward, input gradient, weight
gradient) with their operands fake-quantized by tradeoffs.formats, gradients through a straight-through
estimator.

Each GEMM operand is quantized along that GEMM's contraction axis, as block-scaled hardware does:
  forward   y  = Q_a(x) Q_w(W)^T          x, W along the input features (K)
  dgrad     dx = Q_g(dy) Q_w(W)           dy, W along the output features
  wgrad     dW = Q_g(dy)^T Q_a(x)         dy, x along the tokens
With `hadamard`, x and W are rotated along K by one orthonormal blockwise Hadamard matrix before quantizing
(the rotations cancel in the product; Quartet). With `wgrad_hadamard`, dy and x are rotated along the tokens
by a random-sign Hadamard matrix before the wgrad quantization (the NVFP4 recipe).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tradeoffs.formats import FormatSpec, fake_quant, fake_quant_group, hadamard_rotate
from tradeoffs.train.config import COMPILE_BREAK_EVEN_TOKENS, RecipeConfig


@dataclass
class LinearQuantizer:
    """What a QuantLinear does to its GEMM operands; shared by every Linear of a recipe."""

    weight: FormatSpec
    activation: FormatSpec
    gradient: FormatSpec
    hadamard_size: int = 0  # 0: no forward rotation
    wgrad_hadamard_size: int = 0  # 0: no weight-gradient rotation
    generator: torch.Generator | None = None  # stochastic rounding draws
    enabled: bool = True
    compiled: bool = False  # fake_quant through torch.compile (bit-identical, faster after compiling)
    step: int = 0  # seeds the random signs of the wgrad rotation, so they change every step

    def quant(self, x: Tensor, spec: FormatSpec, axis: int) -> Tensor:
        if spec.is_identity:
            return x
        return fake_quant(x, spec, axis=axis, generator=self.generator, compiled=self.compiled)

    def quant_operands(self, *operands: tuple[Tensor, FormatSpec, int]) -> list[Tensor]:
        """The (x, format, axis) operands of one pass, quantized in this order (stochastic rounding draws in
        it); compiled, all of them in one graph, as the per-call cost outweighs these small tensors' arithmetic."""
        if self.compiled:
            return fake_quant_group(operands, self.generator, compiled=True)
        return [self.quant(x, spec, axis) for x, spec, axis in operands]


class _QuantizedMatmul(torch.autograd.Function):
    """y = x W^T on 2-D x (tokens, K) with quantized operands in all three GEMMs (module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, quantizer: LinearQuantizer) -> Tensor:
        ctx.dtypes = (x.dtype, weight.dtype)
        x, weight = x.float(), weight.float()  # emulation computes in FP32, also under autocast
        ctx.save_for_backward(x, weight)
        ctx.quantizer = quantizer
        xf, wf = x, weight
        if quantizer.hadamard_size:
            xf, wf = hadamard_rotate(x, quantizer.hadamard_size), hadamard_rotate(weight, quantizer.hadamard_size)
        with torch.autocast(x.device.type, enabled=False):
            xq, wq = quantizer.quant_operands((xf, quantizer.activation, -1), (wf, quantizer.weight, -1))
            return xq @ wq.T

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, None]:
        x, weight = ctx.saved_tensors
        q: LinearQuantizer = ctx.quantizer
        grad_out = grad_out.float()
        dy, xs = grad_out, x
        if q.wgrad_hadamard_size:
            size, seed = q.wgrad_hadamard_size, q.step
            dy = hadamard_rotate(dy, size, axis=0, signs_seed=seed)
            xs = hadamard_rotate(xs, size, axis=0, signs_seed=seed)
        dgrad_dy, dgrad_w, wgrad_dy, wgrad_x = q.quant_operands(
            (grad_out, q.gradient, -1), (weight, q.weight, 0), (dy, q.gradient, 0), (xs, q.activation, 0)
        )
        grad_x = dgrad_dy @ dgrad_w
        grad_w = wgrad_dy.T @ wgrad_x
        x_dtype, w_dtype = ctx.dtypes
        return grad_x.to(x_dtype), grad_w.to(w_dtype), None


class QuantLinear(nn.Linear):
    """nn.Linear whose matmul runs with emulated quantized operands (same parameters and state dict)."""

    quantizer: LinearQuantizer

    def forward(self, x: Tensor) -> Tensor:
        if not self.quantizer.enabled:
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        y = _QuantizedMatmul.apply(flat, self.weight, self.quantizer).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def _quantized_linear_names(model: nn.Module, recipe: RecipeConfig) -> list[str]:
    """Names of the Linear modules a recipe quantizes: all but the lm_head (unless asked) and the last
    `keep_last_layers` transformer blocks (model.blocks)."""
    blocks = getattr(model, "blocks", None)
    kept_blocks = set()
    if blocks is not None and recipe.keep_last_layers:
        kept_blocks = {id(block) for block in list(blocks)[-recipe.keep_last_layers :]}
    kept_modules = {id(m) for block in blocks or [] if id(block) in kept_blocks for m in block.modules()}
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or id(module) in kept_modules:
            continue
        if name.split(".")[-1] == "lm_head" and not recipe.quantize_lm_head:
            continue
        names.append(name)
    return names


def apply_recipe(
    model: nn.Module, recipe: RecipeConfig, generator: torch.Generator | None = None, compiled: bool = False
) -> LinearQuantizer:
    """Turn the recipe's Linear layers into QuantLinear in place; returns their shared quantizer (to switch
    quantization on at the QAT start and to advance the step). A recipe without Linear formats changes nothing."""
    quantizer = LinearQuantizer(
        recipe.weight_format,
        recipe.activation_format,
        recipe.gradient_format,
        recipe.hadamard_size if recipe.hadamard else 0,
        recipe.hadamard_size if recipe.wgrad_hadamard else 0,
        generator,
        enabled=recipe.quant_start_fraction == 0,
        compiled=compiled,
    )
    if not recipe.emulated:
        return quantizer
    for name in _quantized_linear_names(model, recipe):
        module = model.get_submodule(name)
        module.__class__ = QuantLinear
        module.quantizer = quantizer
    return quantizer


def compile_decision(
    recipe: RecipeConfig, allowed: bool, tokens: int, min_tokens: int = COMPILE_BREAK_EVEN_TOKENS
) -> tuple[bool, str]:
    """Whether a run of `tokens` training tokens compiles its recipe's quantizers, and why: only when allowed,
    when the recipe quantizes Linears at all, and when the run has at least `min_tokens` (compiling pays)."""
    if not recipe.emulated:
        return False, "no emulated Linears"
    if not allowed:
        return False, "compile_quant=false"
    if tokens < min_tokens:
        return False, f"{tokens} training tokens < recipe.compile_min_tokens={min_tokens}: compiling would not pay"
    return True, f"{tokens} training tokens >= recipe.compile_min_tokens={min_tokens}"
