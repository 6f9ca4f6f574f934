"""Where an experiment runs: the device, its threads and the peaks its throughput is compared with (the
hardware presets, tradeoffs.presets). The peak tables themselves and the CPU estimate are in
tradeoffs.bench.hardware."""

from __future__ import annotations

from dataclasses import dataclass, field

from tradeoffs.errors import check_choice, check_positive
from tradeoffs.identity import descriptive

# Compute dtypes a hardware peak is quoted for (TFLOP/s; TOP/s for int8).
PEAK_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")

# Operand dtypes a GEMM case is built for (tradeoffs.bench.gemm.build_case).
GEMM_DTYPES = (
    "fp32",
    "tf32",
    "bf16",
    "fp16",
    "fp8_e4m3",
    "fp8_e5m2",
    "int8",
    "w8_dequant",
    "w8_fused",
    "w4_dequant",
    "w4_fused",
)


@dataclass
class HardwareConfig:
    """Where an experiment runs, and the peaks its throughput is compared with (a hardware preset)."""

    name: str = descriptive("cpu")
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0 takes the job's allotment (Snakemake threads)
    peak_tflops: dict[str, float] = field(default_factory=dict)  # dense datasheet peaks per dtype
    memory_bandwidth_gbs: float = 0.0
    unsupported: dict[str, str] = field(default_factory=dict)  # dtype -> why this hardware cannot run it natively
    source: str = descriptive()

    def __post_init__(self) -> None:
        check_choice("hardware.device", self.device, ("cpu", "cuda"))
        check_positive("hardware.threads", self.threads, allow_zero=True)
        check_positive("hardware.memory_bandwidth_gbs", self.memory_bandwidth_gbs, allow_zero=True)
        for dtype, peak in self.peak_tflops.items():
            check_choice("hardware.peak_tflops key", dtype, PEAK_DTYPES)
            check_positive(f"hardware.peak_tflops.{dtype}", peak)
        for dtype in self.unsupported:
            check_choice("hardware.unsupported key", dtype, PEAK_DTYPES)
