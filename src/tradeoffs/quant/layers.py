"""Quantized Linear layers and the KV cache hook that quantize_ installs (by module substitution, keeping
the Linear's parameters): fake-quantized weights, activations quantized per forward, optional online
Hadamard rotation of the inputs, and LLM.int8()'s mixed-precision decomposition."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tradeoffs.formats import FormatSpec, fake_quant, get_format

INT8_VECTORWISE = "int8"  # conf/format/int8.yaml: symmetric INT8, one absmax scale per row along the axis


def rotate_blocks(x: Tensor, rotation: Tensor) -> Tensor:
    """x (..., n) times the block-diagonal matrix with `rotation` (s, s) on its diagonal, along the last axis."""
    size = rotation.shape[0]
    return (x.reshape(*x.shape[:-1], x.shape[-1] // size, size) @ rotation).reshape(x.shape)


class QuantizedLinear(nn.Linear):
    """nn.Linear with (already fake-quantized) weights whose input is rotated online (optional) and then
    quantized per forward in `activation_format` along the input features (dynamic scales)."""

    activation_format: FormatSpec | None
    rotation: Tensor | None
    weight_format: FormatSpec | None
    selector_bits: float = 0.0  # per weight: a searched format's per-row element choice (tradeoffs.quant.search)

    def weight_input(self, x: Tensor) -> Tensor:
        """The input as the weight sees it before activation quantization (after the online rotation)."""
        return x if self.rotation is None else rotate_blocks(x, self.rotation.to(x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        x = self.weight_input(x)
        if self.activation_format is not None:
            x = fake_quant(x, self.activation_format, axis=-1)
        return F.linear(x, self.weight, self.bias)

    def bits_per_weight(self) -> float:
        """Storage of the weight in bits per element, scales, zero points and a searched element choice included."""
        if self.weight_format is None:
            return float(torch.finfo(self.weight.dtype).bits)
        return self.weight_format.bits_per_element(self.in_features) + self.selector_bits


def make_quantized(
    linear: nn.Linear,
    activation: FormatSpec | None,
    weight_format: FormatSpec | None,
    rotation: Tensor | None = None,
) -> QuantizedLinear:
    """Turn `linear` into a QuantizedLinear in place (same parameters); its weight is quantized separately."""
    linear.__class__ = QuantizedLinear
    linear.activation_format = None if activation is None or activation.is_identity else activation
    linear.weight_format = weight_format
    linear.rotation = rotation
    return linear


def make_targets_quantized(
    targets: Mapping[str, nn.Linear], activation: FormatSpec | None, weight_format: FormatSpec | None
) -> None:
    """make_quantized on every target Linear of a method (their weights are quantized by the method)."""
    for linear in targets.values():
        make_quantized(linear, activation, weight_format)


class LLMInt8Linear(nn.Linear):
    """LLM.int8(): y = Q(X_n) Q(W)^T + X_o W_o^T. X_o are the input columns holding any |x| >= threshold,
    multiplied in 16 bits (outlier_dtype) with the 16-bit weights (or, outlier_weights=int8, the INT8-dequantized
    ones); X_n the other columns, INT8 with one absmax scale per token; Q(W) INT8 with one absmax scale per
    output row. Products of the INT8 parts are exact integers times scales, computed in FP32."""

    threshold: float
    outlier_dtype: torch.dtype
    weight_16bit: Tensor | None  # the 16-bit weights of the outlier columns' product (None: INT8 ones)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features).float()
        outliers = (flat.abs() >= self.threshold).any(dim=0)
        normal = fake_quant(flat.masked_fill(outliers, 0.0), INT8_VECTORWISE, axis=-1)
        y = normal @ self.weight.T
        if outliers.any():
            columns = outliers.nonzero().squeeze(1)
            weights = self.weight if self.weight_16bit is None else self.weight_16bit
            x_o = flat[:, columns].to(self.outlier_dtype)
            w_o = weights[:, columns].to(self.outlier_dtype)
            y = y + (x_o @ w_o.T).float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def bits_per_weight(self) -> float:
        """INT8 weights with an FP32 scale per row, plus the 16-bit copy when outlier columns use it."""
        stored = get_format(INT8_VECTORWISE).bits_per_element(self.in_features)
        return stored + (16.0 if self.weight_16bit is not None else 0.0)


@torch.no_grad()
def make_llm_int8(linear: nn.Linear, threshold: float, outlier_dtype: str, outlier_weights: str) -> LLMInt8Linear:
    """Turn `linear` into an LLMInt8Linear in place: INT8 row-wise weights, 16-bit outlier columns."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[outlier_dtype]
    weight_16bit = linear.weight.detach().to(dtype).clone() if outlier_weights == "16bit" else None
    linear.weight.copy_(fake_quant(linear.weight.float(), INT8_VECTORWISE, axis=-1))
    linear.__class__ = LLMInt8Linear
    linear.threshold, linear.outlier_dtype, linear.weight_16bit = threshold, dtype, weight_16bit
    return linear


def kv_cache_hooks(model: nn.Module, fmt: FormatSpec) -> list[torch.utils.hooks.RemovableHandle]:
    """Quantize keys and values as they enter the cache: the key/value parts of each attention's projection
    outputs, per token and head along the head dimension (GPT: the k|v slices of `attn.qkv`; Hugging Face:
    `k_proj`/`v_proj`, before any rotary embedding). Raises ValueError when no attention layout is known."""
    handles = []
    for module in model.modules():
        qkv = getattr(module, "qkv", None)
        if isinstance(qkv, nn.Linear) and hasattr(module, "n_kv_head"):
            head_dim, kv = module.head_dim, module.n_kv_head * module.head_dim

            def fused(_m, _i, out, head_dim=head_dim, kv=kv):
                q, k, v = out.split([out.shape[-1] - 2 * kv, kv, kv], -1)
                return torch.cat([q, _heads(k, head_dim, fmt), _heads(v, head_dim, fmt)], -1)

            handles.append(qkv.register_forward_hook(fused))
        elif isinstance(getattr(module, "k_proj", None), nn.Linear) and hasattr(module, "head_dim"):
            for proj in (module.k_proj, module.v_proj):
                handles.append(proj.register_forward_hook(lambda _m, _i, out, d=module.head_dim: _heads(out, d, fmt)))
    if not handles:
        raise ValueError(f"kv_cache quantization: no known attention layout in {type(model).__name__}")
    return handles


def head_dims(model: nn.Module) -> set[int]:
    """The head dimensions of the model's attention layers (the axis KV cache quantization runs along)."""
    return {
        m.head_dim for m in model.modules() if hasattr(m, "head_dim") and (hasattr(m, "qkv") or hasattr(m, "k_proj"))
    }


def _heads(x: Tensor, head_dim: int, fmt: FormatSpec) -> Tensor:
    shaped = x.reshape(*x.shape[:-1], x.shape[-1] // head_dim, head_dim)
    return fake_quant(shaped, fmt, axis=-1).reshape(x.shape)
