"""Split-K: every matmul's contraction summed as a number of partial sums, so that only the order of the
additions changes.

`SplitK(parts)` is a torch function mode: inside `with SplitK(4):` every `F.linear`, `torch.matmul` (and
`@`, `mm`, `bmm`, `addmm`) and `F.scaled_dot_product_attention` of any module runs through the functions
below, which cut the K dimension into `parts` contiguous chunks, compute each chunk's product with the native
kernel and add the partial sums one after another (chunk 0, then 1, ...). In exact arithmetic the result is
the same as the unsplit product; in floating point only the summation order differs.

Low-precision operands (fp16, bf16) are multiplied and accumulated in fp32 and rounded once to their dtype
at the end, as a tensor-core GEMM with an fp32 split-K workspace does (the products of two bf16 or fp16
numbers are exact in fp32). `round_partials` instead rounds each partial sum to the operands' dtype and adds
the partials in it, as a split-K GEMM with a reduced-precision reduction does (cuBLAS may, for fp16/bf16,
unless torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction is off): that changes the rounding
too, not only the order. The emulated attention computes as torch's math backend does (operands upcast
to the accumulation dtype, query and key each scaled by the square root of the softmax scale, fp32 scores,
softmax and weighted values, one rounding at the end), so with one part it matches that backend.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

LOW_PRECISION = (torch.float16, torch.bfloat16)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype partial sums are kept in: fp32 for fp16/bf16 operands, the operands' own dtype otherwise."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def split_matmul_accumulated(a: Tensor, b: Tensor, parts: int, rounded: torch.dtype | None = None) -> Tensor:
    """a @ b with the contraction (a's last, b's second-to-last dimension) in `parts` contiguous chunks whose
    products are added in order, left in the accumulation dtype; with `rounded`, each partial sum is rounded
    to that dtype and the partials are added in it."""
    accumulate = accumulation_dtype(torch.promote_types(a.dtype, b.dtype))
    a, b = a.to(accumulate), b.to(accumulate)
    chunks = max(1, min(parts, a.shape[-1]))
    total = None
    for a_chunk, b_chunk in zip(a.tensor_split(chunks, dim=-1), b.tensor_split(chunks, dim=-2), strict=True):
        partial = torch.matmul(a_chunk, b_chunk)
        partial = partial if rounded is None else partial.to(rounded)
        total = partial if total is None else total + partial
    return total


def _partials(working: torch.dtype, round_partials: bool) -> torch.dtype | None:
    return working if round_partials else None


def split_matmul(a: Tensor, b: Tensor, parts: int, round_partials: bool = False) -> Tensor:
    """a @ b summed over `parts` partial sums of the contraction, rounded once to the operands' dtype (with
    round_partials: each partial sum rounded to it, and added in it)."""
    working = torch.promote_types(a.dtype, b.dtype)
    return split_matmul_accumulated(a, b, parts, _partials(working, round_partials)).to(working)


def split_linear(x: Tensor, weight: Tensor, bias: Tensor | None, parts: int, round_partials: bool = False) -> Tensor:
    """F.linear (x @ weight.T + bias) with the input features summed in `parts` partial sums."""
    working = torch.promote_types(x.dtype, weight.dtype)
    total = split_matmul_accumulated(x, weight.transpose(-2, -1), parts, _partials(working, round_partials))
    if bias is not None:
        total = total + bias.to(total.dtype)
    return total.to(working)


def split_addmm(
    bias: Tensor, a: Tensor, b: Tensor, parts: int, round_partials: bool = False, beta: float = 1, alpha: float = 1
) -> Tensor:
    """torch.addmm (beta * bias + alpha * a @ b) with the contraction in `parts` partial sums."""
    working = torch.promote_types(a.dtype, b.dtype)
    total = split_matmul_accumulated(a, b, parts, _partials(working, round_partials))
    total = alpha * total if alpha != 1 else total
    if beta != 0:
        total = total + (beta * bias.to(total.dtype) if beta != 1 else bias.to(total.dtype))
    return total.to(working)


def split_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    parts: int,
    round_partials: bool = False,
) -> Tensor:
    """F.scaled_dot_product_attention (inference: no dropout) with both contractions split: the scores over
    the head dimension and the weighted values over the key positions, each in `parts` partial sums."""
    if dropout_p:
        raise ValueError("split-K attention is for inference: dropout_p must be 0")
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
        value = value.repeat_interleave(query.shape[-3] // value.shape[-3], dim=-3)
    accumulate, partials = accumulation_dtype(query.dtype), _partials(query.dtype, round_partials)
    root_scale = math.sqrt(1 / math.sqrt(query.shape[-1]) if scale is None else scale)
    query, key = query.to(accumulate) * root_scale, key.to(accumulate) * root_scale
    scores = split_matmul_accumulated(query, key.transpose(-2, -1), parts, partials).to(accumulate)
    if is_causal:
        attn_mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask.to(scores.dtype)
    probabilities = torch.softmax(scores, dim=-1)
    return split_matmul_accumulated(probabilities, value, parts, partials).to(value.dtype)


_MATMULS = (
    *(torch.matmul, torch.mm, torch.bmm),
    *(torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm, torch.Tensor.bmm),
)


class SplitK(TorchFunctionMode):
    """Within the context, every linear, matmul and attention contraction is summed as `parts` partial sums
    (with round_partials, each rounded to the working dtype). `calls` counts the intercepted operations by
    name (what was actually split)."""

    def __init__(self, parts: int, round_partials: bool = False):
        super().__init__()
        if parts < 1:
            raise ValueError(f"split-K needs at least one part, got {parts}")
        self.parts, self.round_partials = parts, round_partials
        self.calls: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            self.calls["linear"] += 1
            x, weight, *rest = args
            return split_linear(x, weight, rest[0] if rest else kwargs.get("bias"), self.parts, self.round_partials)
        if func is F.scaled_dot_product_attention:
            self.calls["attention"] += 1
            return split_attention(*args, **kwargs, parts=self.parts, round_partials=self.round_partials)
        if func in _MATMULS and min(args[0].dim(), args[1].dim()) >= 2:
            self.calls["matmul"] += 1
            return split_matmul(*args[:2], self.parts, self.round_partials)
        if func is torch.addmm:
            self.calls["matmul"] += 1
            return split_addmm(*args[:3], self.parts, self.round_partials, **kwargs)
        return func(*args, **kwargs)
