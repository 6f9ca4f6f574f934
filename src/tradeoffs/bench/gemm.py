"""GEMM cases per dtype: operands, the timed callable, FLOP and byte counts, and the output's error against
an fp64 product of the same (unquantized) operands, so each variant's speed sits next to its accuracy.

Quantized operands come from the formats library (tradeoffs.formats.quantize): int8 per row/column,
FP8 per tensor, weight-only int8 per output channel and int4 in groups of 128. Combinations this hardware
cannot run natively raise Unsupported with the reason; nothing falls back silently to an emulation.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from tradeoffs.errors import Unsupported, check_choice
from tradeoffs.formats import FormatSpec, quantize
from tradeoffs.hardware import GEMM_DTYPES, HardwareConfig

# The peak each dtype's throughput is compared with (weight-only variants compute in bf16).
PEAK_DTYPE = {
    "fp32": "fp32",
    "tf32": "tf32",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "int8": "int8",
    "w8_dequant": "bf16",
    "w8_fused": "bf16",
    "w4_dequant": "bf16",
    "w4_fused": "bf16",
}
# Relative Frobenius error of the output against fp64 above which a kernel is taken to be broken.
ACCURACY_GATE = {
    "fp32": 1e-5,
    "tf32": 1e-2,
    "bf16": 2e-2,
    "fp16": 2e-2,
    "fp8_e4m3": 0.15,
    "fp8_e5m2": 0.25,
    "int8": 0.05,
    "w8_dequant": 0.05,
    "w8_fused": 0.05,
    "w4_dequant": 0.3,
    "w4_fused": 0.3,
}
INT4_GROUP = 128
INT4_FORMAT = FormatSpec(
    name="int4_g128", element="int4", granularity="block", block_size=INT4_GROUP, scale_format="bf16"
)
FP8_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


@dataclass
class GemmCase:
    """One timed GEMM: `fn()` computes the product of M x K and K x N operands stored as `dtype`."""

    dtype: str
    m: int
    k: int
    n: int
    fn: Callable[[], torch.Tensor]
    kernel: str
    bytes: int  # minimum memory traffic: operands and scales read once, output written once
    output_error: float  # relative Frobenius error of the output against fp64 on the unquantized operands
    precision: Callable[[], contextlib.AbstractContextManager]  # wraps the timing (TF32 switch on CUDA)

    @property
    def flops(self) -> int:
        """2*M*N*K (multiply and add), integer ops for int8."""
        return 2 * self.m * self.n * self.k

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte of minimum traffic."""
        return self.flops / self.bytes

    @property
    def peak_dtype(self) -> str:
        return PEAK_DTYPE[self.dtype]


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 tensor cores for fp32 matmuls on CUDA within the block."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def check_supported(dtype: str, device: str, hardware: HardwareConfig) -> None:
    """Raise Unsupported when `hardware` cannot run GEMMs of `dtype` natively."""
    check_choice("dtype", dtype, GEMM_DTYPES)
    peak = PEAK_DTYPE[dtype]
    if peak in hardware.unsupported:
        raise Unsupported(f"{dtype} GEMM on {hardware.name}: {hardware.unsupported[peak]}")
    if device == "cpu" and peak in ("tf32", "fp8"):
        raise Unsupported(f"{dtype} GEMM on a CPU: no native units (torch._scaled_mm on CPU is a naive kernel)")
    if device == "cuda" and peak == "fp8" and torch.cuda.get_device_capability() < (8, 9):
        raise Unsupported(f"{dtype} GEMM needs FP8 tensor cores (sm_89 or later)")


def _check_shape(dtype: str, m: int, k: int, n: int, device: str) -> None:
    """Shape limits of the kernels (raise Unsupported with the kernel's rule)."""
    if dtype.startswith("fp8") and (k % 16 or n % 16):
        raise Unsupported(f"torch._scaled_mm needs K and N multiples of 16, got K={k} N={n}")
    if dtype == "int8" and device == "cuda" and (m <= 16 or k % 8 or n % 8):
        raise Unsupported(f"torch._int_mm on CUDA needs M > 16 and K, N multiples of 8, got {m}x{k}x{n}")
    if dtype.startswith("w4") and k % INT4_GROUP:
        raise Unsupported(f"int4 weights in groups of {INT4_GROUP} need K divisible by {INT4_GROUP}, got K={k}")


def _int8_codes(x: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes and fp32 scales of `x`, one scale per slice along `axis` (formats library)."""
    q = quantize(x, "int8", axis=axis)
    codes = q.codes.reshape(q.shape if axis == -1 else q.shape[::-1]).to(torch.int8)
    scale = q.block_scale.reshape(-1)
    return (codes if axis == -1 else codes.t()), scale


def _fp8(x: torch.Tensor, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor FP8 codes as a torch float8 tensor and the fp32 scale (formats library)."""
    q = quantize(x, dtype)
    codes = q.codes.reshape(x.shape).to(torch.uint8).view(FP8_DTYPES[dtype])
    return codes, q.block_scale.reshape(()).float()


def _int4_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int4 codes of an N x K weight as unsigned nibbles 0..15 (code + 8), N x K int32, and bf16 group scales
    N x K/128 (formats library: symmetric, absmax scale per group of 128 along K)."""
    q = quantize(w, INT4_FORMAT)
    return (q.codes.reshape(w.shape) + 8).int(), q.block_scale.reshape(w.shape[0], -1).bfloat16()


@functools.lru_cache(maxsize=1)
def _operands(m: int, k: int, n: int, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded fp32 operands and their fp64 product, kept for the next dtype of the same shape (read only)."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k, generator=generator).to(device)
    b = torch.randn(k, n, generator=generator).to(device)
    return a, b, a.double() @ b.double()


def _relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return ((output.double() - reference).norm() / reference.norm()).item()


def build_case(dtype: str, shape: list[int] | tuple[int, int, int], device: str, seed: int = 0) -> GemmCase:
    """Operands of `shape` = (M, K, N), seeded, and the timed callable of `dtype` (see module docstring).
    The weight-only variants treat the K x N operand as the weight of a linear layer (stored N x K)."""
    m, k, n = shape
    _check_shape(dtype, m, k, n, device)
    a, b, reference = _operands(m, k, n, device, seed)
    precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    if dtype in ("fp32", "tf32"):
        fn, kernel, traffic = (lambda: torch.mm(a, b)), f"torch.mm {dtype}", 4 * (m * k + k * n + m * n)
        if device == "cuda":
            precision = lambda: _tf32(dtype == "tf32")  # noqa: E731
        to_float = lambda out: out  # noqa: E731
    elif dtype in ("bf16", "fp16"):
        torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
        a16, b16 = a.to(torch_dtype), b.to(torch_dtype)
        fn, kernel, traffic = (lambda: torch.mm(a16, b16)), f"torch.mm {dtype}", 2 * (m * k + k * n + m * n)
        to_float = lambda out: out  # noqa: E731
    elif dtype == "int8":
        a8, scale_a = _int8_codes(a, axis=-1)
        b8, scale_b = _int8_codes(b, axis=0)
        fn, kernel, traffic = (lambda: torch._int_mm(a8, b8)), "torch._int_mm (int32 output)", m * k + k * n + 4 * m * n
        to_float = lambda out: out.double() * scale_a[:, None].double() * scale_b[None, :].double()  # noqa: E731
    elif dtype in FP8_DTYPES:
        a8, scale_a = _fp8(a, dtype)
        b8, scale_b = _fp8(b, dtype)
        b8 = b8.t().contiguous().t()  # column-major, as cuBLASLt wants the second operand

        def fn() -> torch.Tensor:
            return torch._scaled_mm(a8, b8, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)

        kernel, traffic = "torch._scaled_mm, per-tensor scales, bf16 output", m * k + k * n + 2 * m * n
        to_float = lambda out: out  # noqa: E731
    else:
        fn, kernel, traffic = _weight_only(dtype, a, b, device)
        to_float = lambda out: out  # noqa: E731

    try:
        with precision():
            output = to_float(fn())
    except NotImplementedError as error:  # the dispatcher has no kernel for this device
        raise Unsupported(f"{kernel} has no {device} kernel in torch {torch.__version__}: {error}") from None
    except RuntimeError as error:
        if "not supported" in str(error).lower() or "only supports" in str(error).lower():
            raise Unsupported(f"{kernel} rejected {m}x{k}x{n} on {device}: {error}") from None
        raise
    return GemmCase(dtype, m, k, n, fn, kernel, traffic, _relative_error(output, reference), precision)


def _weight_only(
    dtype: str, a: torch.Tensor, b: torch.Tensor, device: str
) -> tuple[Callable[[], torch.Tensor], str, int]:
    """bf16 activations times int8/int4 weights: dequantize then matmul, or a fused kernel."""
    (m, k), n = a.shape, b.shape[1]
    x = a.bfloat16()
    weight = b.t().contiguous()  # N x K, the layout of nn.Linear
    out_bytes = 2 * m * n + 2 * m * k
    if dtype.startswith("w8"):
        w8, scale = _int8_codes(weight, axis=-1)
        scale16 = scale.bfloat16()
        traffic = out_bytes + n * k + 2 * n
        if dtype == "w8_fused":
            return (lambda: torch._weight_int8pack_mm(x, w8, scale16)), "torch._weight_int8pack_mm (fused)", traffic
        return (lambda: x @ (w8.to(torch.bfloat16) * scale16[:, None]).t()), "dequantize to bf16, torch.mm", traffic

    nibbles, scales = _int4_weight(weight)
    traffic = out_bytes + n * k // 2 + 2 * n * (k // INT4_GROUP)
    if dtype == "w4_dequant":
        packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).to(torch.uint8)  # two codes per byte

        def dequantize_matmul() -> torch.Tensor:
            codes = torch.stack([packed & 15, packed >> 4], dim=-1).reshape(n, k).to(torch.bfloat16) - 8
            w16 = (codes.reshape(n, k // INT4_GROUP, INT4_GROUP) * scales[..., None]).reshape(n, k)
            return x @ w16.t()

        return dequantize_matmul, "unpack int4, dequantize to bf16, torch.mm", traffic
    # tinygemm layout: w = (q - 8) * scale + zero with zero = 0; scales_and_zeros is K/group x N x 2.
    scales_and_zeros = torch.stack([scales.t(), torch.zeros_like(scales.t())], dim=-1).contiguous()
    if device == "cpu":
        packed = torch._convert_weight_to_int4pack_for_cpu(nibbles, 2)
        return (
            lambda: torch._weight_int4pack_mm_for_cpu(x, packed, INT4_GROUP, scales_and_zeros),
            "torch._weight_int4pack_mm_for_cpu (fused)",
            traffic,
        )
    packed = torch._convert_weight_to_int4pack((nibbles[:, 0::2] << 4 | nibbles[:, 1::2]).to(torch.uint8), 8)
    return (
        lambda: torch._weight_int4pack_mm(x, packed, INT4_GROUP, scales_and_zeros),
        "torch._weight_int4pack_mm (fused, tinygemm)",
        traffic,
    )
