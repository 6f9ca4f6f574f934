"""The quantize-dequantize benchmark of the formats library: tradeoffs.formats.fake_quant beside a
plain tensor copy (the memory-bandwidth limit) and torchao's eager quantize-dequantize of the same format,
timed by the engine in one process, with peak memory and the agreement of the two implementations.

torchao is matched by the format's structure, not its name: symmetric int8 per channel -> torchao's affine
int8 (choose_qparams/quantize/dequantize_affine); fp8 per tensor -> its float8 primitives; MXFP8/MXFP4
(E8M0 floor scales, blocks of 32) -> to_mx/to_dtype; NVFP4 -> NVFP4Tensor. Any other format has no torchao
counterpart and is timed alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tradeoffs.bench.memory import PeakMemory, track_peak_memory
from tradeoffs.bench.timing import BenchConfig, Measurement, measure
from tradeoffs.formats import FormatSpec, ScaleRule, fake_quant, get_format
from tradeoffs.formats.quantize import compile_failure
from tradeoffs.numerics.error import qsnr_db

QDQ_FORMATS = ("int8", "fp8_e4m3", "mxfp8_e4m3", "mxfp4", "mxint8", "nvfp4")
ROW = 4096  # values per row: the axis of per-channel scales and of blocks
OURS = ("fake_quant", "compiled", "compiled_alloc")  # the implementations of tradeoffs.formats time_format times


def qdq_input(log2_elements: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """A seeded standard-normal fp32 tensor of 2^log2_elements values, rows of up to 4096."""
    n = 2**log2_elements
    row = min(ROW, n)
    return torch.randn(n // row, row, generator=torch.Generator().manual_seed(seed)).to(device)


def _torchao_import() -> None:
    with warnings.catch_warnings():  # torchao warns about CUDA extensions it cannot load on a CPU build
        warnings.simplefilter("ignore")
        import torchao.prototype.mx_formats
        import torchao.quantization.quant_primitives  # noqa: F401


def torchao_qdq(spec: FormatSpec) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """torchao's eager quantize-dequantize of `spec` along the last axis, or None if torchao has none."""
    _torchao_import()
    if spec.granularity == "channel" and spec.element == "int8" and not spec.asymmetric:
        from torchao.quantization.quant_primitives import (
            MappingType,
            choose_qparams_affine,
            dequantize_affine,
            quantize_affine,
        )

        def int8_channel(x: torch.Tensor) -> torch.Tensor:
            block = (1, x.shape[-1])
            scale, zero = choose_qparams_affine(x, MappingType.SYMMETRIC, block, torch.int8, -127, 127)
            q = quantize_affine(x, block, scale, zero, torch.int8, -127, 127)
            return dequantize_affine(q, block, scale, zero, torch.int8, -127, 127)

        return int8_channel
    fp8 = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
    if spec.granularity == "tensor" and spec.element in fp8:
        from torchao.quantization.quant_primitives import (
            _choose_scale_float8,
            _dequantize_affine_float8,
            _quantize_affine_float8,
        )

        dtype = fp8[spec.element]

        def fp8_tensor(x: torch.Tensor) -> torch.Tensor:
            scale = _choose_scale_float8(x, list(x.shape), dtype)
            return _dequantize_affine_float8(_quantize_affine_float8(x, scale, dtype), scale, torch.float32)

        return fp8_tensor
    mx = {**fp8, "fp4_e2m1": torch.float4_e2m1fn_x2}
    is_block = spec.granularity == "block" and spec.rounding == "nearest"
    if is_block and spec.block_size == 32 and spec.scale_format == "e8m0" and spec.scale_rule == ScaleRule.floor:
        if spec.element not in mx:
            return None
        from torchao.prototype.mx_formats.config import ScaleCalculationMode
        from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx

        dtype = mx[spec.element]

        def mx_block(x: torch.Tensor) -> torch.Tensor:
            scale, data = to_mx(x, dtype, 32, ScaleCalculationMode.FLOOR)
            return to_dtype(data, scale, dtype, 32, torch.float32)

        return mx_block
    nvfp4 = spec.element == "fp4_e2m1" and spec.scale_format == "e4m3" and spec.tensor_scale
    if is_block and nvfp4 and spec.block_size == 16 and spec.scale_rule == ScaleRule.absmax:
        from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

        def nvfp4_block(x: torch.Tensor) -> torch.Tensor:
            per_tensor = per_tensor_amax_to_scale(x.abs().amax())
            return NVFP4Tensor.to_nvfp4(x, per_tensor_scale=per_tensor).dequantize(torch.float32)

        return nvfp4_block
    return None


@dataclass
class Timed:
    """A timed implementation: its measurement and peak memory."""

    name: str
    measurement: Measurement
    memory: PeakMemory
    elements: int
    bytes_per_element: int  # memory traffic per fp32 value: read and written (8), or read only (4)

    @property
    def elements_per_s(self) -> float:
        return self.elements / self.measurement.stats.median

    @property
    def gbs(self) -> float:
        return self.bytes_per_element * self.elements_per_s / 1e9

    def copies_of_input(self, input_bytes: int) -> float | None:
        """Peak RSS growth (CUDA: allocator peak growth) in units of the input's size."""
        growth = self.memory.cuda_growth if self.memory.cuda_growth is not None else self.memory.rss_growth
        return None if growth is None else growth / input_bytes


def time_impl(
    name: str, fn: Callable[[], object], x: torch.Tensor, config: BenchConfig, device: str, bytes_per_element: int = 8
) -> Timed:
    """Measure `fn` with the engine, then its peak memory on one more call."""
    measurement = measure(fn, config, device=device)
    with track_peak_memory(device) as memory:
        fn()
    return Timed(name, measurement, memory, x.numel(), bytes_per_element)


def time_copies(x: torch.Tensor, config: BenchConfig, device: str) -> list[Timed]:
    """A copy into a preallocated tensor (the bandwidth limit) and an allocating clone."""
    out = torch.empty_like(x)
    return [
        time_impl("copy", lambda: out.copy_(x), x, config, device),
        time_impl("clone", lambda: x.clone(), x, config, device),
    ]


def time_read(x: torch.Tensor, config: BenchConfig, device: str) -> Timed:
    """A read-only stream (a sum: one add per 4 bytes read), the bandwidth roof of kernels that read far more
    than they write, such as a GEMV's weights; it exceeds the copy's, which also writes."""
    return time_impl("read", lambda: x.sum(), x, config, device, bytes_per_element=4)


@dataclass
class Agreement:
    """How fake_quant's output compares with torchao's on the same input, and fake_quant's QSNR."""

    max_abs_diff: float
    mismatch_fraction: float
    qsnr_db: float


def agreement(x: torch.Tensor, ours: torch.Tensor, theirs: torch.Tensor | None) -> Agreement:
    """Differences between the two outputs (NaN without torchao) and the QSNR of ours against x."""
    signal, noise = x.double().pow(2).sum().item(), (ours.double() - x.double()).pow(2).sum().item()
    qsnr = qsnr_db(signal, noise)
    if theirs is None:
        return Agreement(float("nan"), float("nan"), qsnr)
    diff = (ours - theirs).abs()
    return Agreement(diff.max().item(), (diff > 0).double().mean().item(), qsnr)


def time_format(
    name_or_spec: str | FormatSpec,
    x: torch.Tensor,
    config: BenchConfig,
    device: str,
    compare_torchao: bool = True,
    compiled: bool = False,
) -> tuple[list[Timed], Agreement]:
    """fake_quant of a format, eager (allocating its output, like a clone), timed on `x` beside torchao's
    where it has one; with `compiled`, also through torch.compile (timed after compiling) into a
    preallocated output ("compiled", like the copy) and allocating ("compiled_alloc", like the clone)."""
    spec = get_format(name_or_spec)
    timed = [time_impl("fake_quant", lambda: fake_quant(x, spec), x, config, device)]
    if compiled:
        out = torch.empty_like(x)
        fake_quant(x, spec, compiled=True, out=out)  # compile outside the timed region (seconds; a cold start)
        fake_quant(x, spec, compiled=True)
        if (failure := compile_failure()) is not None:
            raise RuntimeError(f"fake_quant's compiled path is off in this process: {failure}")
        timed.append(time_impl("compiled", lambda: fake_quant(x, spec, compiled=True, out=out), x, config, device))
        timed.append(time_impl("compiled_alloc", lambda: fake_quant(x, spec, compiled=True), x, config, device))
    reference = torchao_qdq(spec) if compare_torchao else None
    if reference is not None:
        timed.append(time_impl("torchao", lambda: reference(x), x, config, device))
    theirs = reference(x) if reference is not None else None
    return timed, agreement(x, fake_quant(x, spec), theirs)
