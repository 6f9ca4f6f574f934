"""Reduction orders: the settings that change how a model's sums are ordered but not what they sum.

A `ReductionOrder` is written as comma-separated `key=value` overrides, e.g. `batch=8,threads=1` or
`split_k=4` (applied on top of a reference order):

| key | values | what changes |
|---|---|---|
| `batch` | >= 1 | prompts decoded together; a short last batch is filled with other prompts (rows discarded) |
| `shuffle` | 0, 1 | 1: batch mates drawn by a seeded permutation of the prompts (another composition, other rows) |
| `split_k` | >= 0 | 0: native kernels; k >= 1: every contraction summed as k partial sums (splitk.py) |
| `partials` | accumulated, rounded | split-K partial sums kept in fp32 (order only), or each rounded to the dtype |
| `threads` | >= 0 | CPU threads (torch.set_num_threads); 0 leaves the process's setting |
| `attention` | native, math | torch's default attention kernel, or its math backend (fp32 inside) |
| `blas` | default, cublas, cublaslt | on CUDA, the BLAS library of every matmul (torch's preference) |

Every row of a batch is computed independently (same length prompts, no padding mask), so the result of
a prompt is mathematically the same under every order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.nondeterminism.splitk import SplitK

ATTENTION_KERNELS = ("native", "math")
BLAS_LIBRARIES = ("default", "cublas", "cublaslt")
PARTIALS = ("accumulated", "rounded")
CHOICES = {"partials": PARTIALS, "attention": ATTENTION_KERNELS, "blas": BLAS_LIBRARIES}


@dataclass(frozen=True)
class ReductionOrder:
    """How a greedy decoding run orders its reductions (see the module docstring for each field)."""

    batch: int = 1
    shuffle: bool = False
    split_k: int = 0
    partials: str = "accumulated"
    threads: int = 0
    attention: str = "native"
    blas: str = "default"

    def spec(self, base: ReductionOrder | None = None) -> str:
        """The `key=value,...` text of the fields that differ from `base` (default: the default order)."""
        base = base or ReductionOrder()
        changed = [f for f in fields(self) if getattr(self, f.name) != getattr(base, f.name)]
        return ",".join(f"{f.name}={_text(getattr(self, f.name))}" for f in changed) or "default"

    def skip_reason(self, device: str) -> str | None:
        """Why this order cannot run (or means nothing) on `device`, or None when it can."""
        if self.blas != "default" and device != "cuda":
            return f"blas={self.blas} selects a CUDA BLAS library; the study runs on {device}"
        if self.threads and device == "cuda":
            return f"threads={self.threads}: the CPU thread count does not reach CUDA kernels"
        return None


def _text(value: object) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


def parse_order(spec: str, key: str, base: ReductionOrder | None = None) -> ReductionOrder:
    """The order that `spec` (`key=value,...`; `default` for none) makes of `base`; ConfigError naming the
    config `key`, the bad part and the valid choices."""
    order = base or ReductionOrder()
    names = [f.name for f in fields(ReductionOrder)]
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if part == "default":
            continue
        name, separator, text = part.partition("=")
        if not separator or name not in names:
            raise ConfigError(f"{key}: invalid part {part!r} of {spec!r}; write key=value with keys {', '.join(names)}")
        if name in CHOICES:
            check_choice(f"{key} ({spec!r}) {name}", text, CHOICES[name])
            order = replace(order, **{name: text})
            continue
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(f"{key}: {name} must be an integer, got {text!r} in {spec!r}") from None
        lowest = {"batch": 1, "shuffle": 0, "split_k": 0, "threads": 0}[name]
        if number < lowest or (name == "shuffle" and number > 1):
            valid = "0 or 1" if name == "shuffle" else f">= {lowest}"
            raise ConfigError(f"{key}: {name} must be {valid}, got {number} in {spec!r}")
        order = replace(order, **{name: bool(number) if name == "shuffle" else number})
    if order.partials == "rounded" and not order.split_k:
        raise ConfigError(f"{key}: partials=rounded needs split_k >= 1 (native kernels have no partials), in {spec!r}")
    return order


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _blas_library(name: str) -> Iterator[None]:
    previous = torch.backends.cuda.preferred_blas_library()
    torch.backends.cuda.preferred_blas_library(name)
    try:
        yield
    finally:
        torch.backends.cuda.preferred_blas_library(previous)


@contextlib.contextmanager
def _full_fp32_matmuls() -> Iterator[None]:
    """FP32 matmuls in full FP32 (no TF32 on GPUs that have it), whatever the process had set."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@contextlib.contextmanager
def reduction_order(order: ReductionOrder) -> Iterator[SplitK | None]:
    """Run the enclosed computation with the order's threads, kernels and split-K (batching is the caller's:
    it decides which prompts share a forward pass). Yields the SplitK mode (its call counts), or None."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_full_fp32_matmuls())
        stack.enter_context(_threads(order.threads))
        if order.attention == "math":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        if order.blas != "default":
            stack.enter_context(_blas_library(order.blas))
        split = SplitK(order.split_k, round_partials=order.partials == "rounded") if order.split_k else None
        mode = stack.enter_context(split) if split else None
        yield mode
