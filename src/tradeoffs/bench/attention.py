"""Memory and time of attention forward + backward by implementation (FlashAttention's claim, docs/memory.md).

Four implementations of softmax(Q K^T / sqrt(d)) V with a causal mask, on (batch, heads, length, head_dim)
inputs:
- `flash`, `efficient`: torch's scaled_dot_product_attention restricted to one fused backend with
  torch.nn.attention.sdpa_kernel (on a CPU only the flash backend exists: a fused, tiled kernel whose backward
  recomputes the probabilities from the saved log-sum-exp); the autograd node's name says which kernel ran;
- `math`: the same call restricted to SDPA's math backend (the unfused composite of matmuls and softmax);
- `explicit`: softmax(Q K^T / sqrt(d)) V written out in torch ops, the naive attention of the papers.

A case measures one implementation at one length: the exact bytes saved for backward (tensors counted once
per storage, tradeoffs.bench.saved), the measured peak of one forward + backward (RSS high-water mark growth on
a CPU, to be run in a fresh fork; the caching allocator's peak on CUDA) and its time by the benchmark
engine's rules. `differences` compares every implementation's output and gradients with a float64 explicit
reference, and `loglog_slope` fits the growth exponent of memory over lengths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from tradeoffs.bench.memory import track_peak_memory
from tradeoffs.bench.saved import count_saved
from tradeoffs.bench.timing import BenchConfig, measure
from tradeoffs.errors import Unsupported

BACKENDS = ("flash", "efficient", "math", "explicit")
FUSED = ("flash", "efficient")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


@dataclass(frozen=True)
class AttentionShape:
    """The inputs of one attention call: batch, heads, head dimension, dtype name and the causal mask."""

    batch: int = 1
    heads: int = 2
    head_dim: int = 16
    dtype: str = "fp32"
    causal: bool = True

    @property
    def element_bytes(self) -> int:
        return DTYPES[self.dtype].itemsize


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """softmax(Q K^T / sqrt(d)) V in plain torch ops (masked positions set to -inf before the softmax)."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        length = q.shape[-2]
        mask = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention_function(backend: str) -> Callable[[Tensor, Tensor, Tensor, bool], Tensor]:
    """The attention of `backend` (one of BACKENDS) as a function of (q, k, v, causal); a backend the machine
    lacks raises Unsupported when called, with torch's reason."""
    if backend == "explicit":
        return explicit_attention
    if backend not in _SDPA:
        raise ValueError(f"attention backend {backend!r}; valid choices: {', '.join(BACKENDS)}")

    def attend(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
        with sdpa_kernel(_SDPA[backend]):
            try:
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            except RuntimeError as error:
                reason = " ".join(str(error).split())[:300]
                raise Unsupported(f"SDPA backend {backend} on {q.device.type} ({q.dtype}): {reason}") from error

    return attend


def attention_flops(shape: AttentionShape, length: int) -> float:
    """FLOPs of one forward + backward as FlashAttention-2 counts them: forward 4 B H L^2 d (Q K^T and P V),
    halved by a causal mask, backward 2.5 times the forward."""
    forward = 4.0 * shape.batch * shape.heads * length**2 * shape.head_dim / (2 if shape.causal else 1)
    return 3.5 * forward


def estimated_peak_bytes(backend: str, shape: AttentionShape, length: int) -> float:
    """An upper estimate of one forward + backward's memory, to refuse lengths a machine cannot hold before any
    work: inputs, outputs and gradients (8 B H L d elements) plus, unfused, four L x L matrices per head
    (scores, probabilities and their gradients) in the dtype and a boolean mask."""
    per_head = 8 * length * shape.head_dim * shape.element_bytes
    if backend not in FUSED:
        per_head += 4 * length * length * shape.element_bytes + length * length
    return float(shape.batch * shape.heads * per_head)


def fused_saved_bytes(shape: AttentionShape, length: int) -> int:
    """What a fused kernel saves for backward by FlashAttention's design: Q, K, V and the output (4 B H L d in
    the dtype) and one FP32 log-sum-exp per query row (B H L)."""
    rows = shape.batch * shape.heads * length
    return 4 * rows * shape.head_dim * shape.element_bytes + 4 * rows


def _inputs(shape: AttentionShape, length: int, device: str, seed: int, dtype: torch.dtype | None = None):
    """q, k, v (requiring grad) and the upstream gradient, drawn from N(0, 1) with a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    size = (shape.batch, shape.heads, length, shape.head_dim)
    tensors = [torch.randn(size, generator=generator, dtype=torch.float64) for _ in range(4)]
    dtype = dtype or DTYPES[shape.dtype]
    q, k, v, grad = (t.to(device=device, dtype=dtype) for t in tensors)
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), grad


@dataclass
class AttentionCase:
    """One implementation at one length: saved bytes (exact), measured peak, time, the kernel that ran."""

    backend: str
    length: int
    supported: bool = True
    reason: str = ""
    kernel: str = ""  # the autograd node of the output (names the fused kernel SDPA picked)
    saved_bytes: int = 0
    saved_tensors: int = 0
    peak_bytes: float = math.nan  # RSS high-water growth (CPU) or allocator peak growth (CUDA)
    peak_source: str = ""
    peak_reset: bool = True  # False: the RSS peak could not be reset (an upper bound)
    timing: dict = field(default_factory=dict)  # the engine's summary (median, spread, stop reason...)
    samples_s: list[float] = field(default_factory=list)


def measure_case(
    backend: str, shape: AttentionShape, length: int, bench: BenchConfig, device: str = "cpu", seed: int = 0
) -> AttentionCase:
    """Saved bytes, peak memory and time of forward + backward of `backend` at `length` (run it in a fresh fork
    on a CPU: the RSS peak then belongs to this case alone)."""
    attend = attention_function(backend)
    case = AttentionCase(backend, length)
    q, k, v, grad = _inputs(shape, length, device, seed)
    try:
        with count_saved() as saved:
            out = attend(q, k, v, shape.causal)
    except Unsupported as error:
        return AttentionCase(backend, length, supported=False, reason=str(error))
    case.kernel = type(out.grad_fn).__name__
    case.saved_bytes, case.saved_tensors = saved.bytes, saved.tensors
    out.backward(grad)
    del out
    q.grad = k.grad = v.grad = None
    with track_peak_memory(device) as memory:
        attend(q, k, v, shape.causal).backward(grad)
    if device == "cuda":
        case.peak_bytes, case.peak_source = float(memory.cuda_growth), "cuda allocator peak"
    else:
        growth = memory.rss_growth
        case.peak_bytes = math.nan if growth is None else float(growth)
        case.peak_source, case.peak_reset = "RSS high-water mark", memory.rss_peak_reset

    def step() -> None:
        q.grad = k.grad = v.grad = None
        attend(q, k, v, shape.causal).backward(grad)

    measurement = measure(step, bench, device=device)
    case.timing, case.samples_s = measurement.summary(), measurement.samples_s
    return case


def differences(backends: Sequence[str], shape: AttentionShape, length: int, device: str = "cpu", seed: int = 0):
    """Max absolute difference of each backend's output and input gradients (`out`, `dq`, `dk`, `dv`) from a
    float64 explicit reference on the same inputs, and that difference over the reference's max magnitude:
    {backend: {tensor: (absolute, relative)}} (unsupported backends left out)."""
    q, k, v, grad = _inputs(shape, length, device, seed, torch.float64)
    reference_out = explicit_attention(q, k, v, shape.causal)
    reference_out.backward(grad)
    reference = {"out": reference_out.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}
    found = {}
    for backend in backends:
        xq, xk, xv, xgrad = _inputs(shape, length, device, seed)
        try:
            out = attention_function(backend)(xq, xk, xv, shape.causal)
        except Unsupported:
            continue
        out.backward(xgrad)
        mine = {"out": out.detach(), "dq": xq.grad, "dk": xk.grad, "dv": xv.grad}
        found[backend] = {
            name: (
                float((mine[name].double() - reference[name]).abs().max()),
                float((mine[name].double() - reference[name]).abs().max() / reference[name].abs().max()),
            )
            for name in reference
        }
    return found


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of log y on log x and its standard error (0 with fewer than 3 points)."""
    logs_x, logs_y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(logs_x) < 3:
        slope = np.polyfit(logs_x, logs_y, 1)[0]
        return float(slope), 0.0
    (slope, _), covariance = np.polyfit(logs_x, logs_y, 1, cov=True)
    return float(slope), float(math.sqrt(covariance[0, 0]))
