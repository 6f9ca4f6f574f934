"""Hardware peaks that throughput is compared with: the datasheet table of the hardware presets
(tradeoffs.presets, hardware/: GPUs, with their sources) and, for a CPU, an estimate from the machine detected
at run time: threads x clock x FLOP per cycle of its ISA (AVX-512, AVX512-BF16/FP16, VNNI, AMX), stated in
every result.

The CPU's memory bandwidth has no datasheet here (a shared VM): the copy benchmark calibrates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from tradeoffs.errors import ConfigError, InvalidResult, Unsupported
from tradeoffs.hardware import HardwareConfig
from tradeoffs.presets import preset_files

# FLOP (int8: OP) per cycle per core by ISA, best first: (flag, FLOP/cycle, how). Every AVX-512 figure
# assumes two 512-bit FMA-capable ports per core, as on Xeon Scalable Gold/Platinum parts (one-port parts
# have half); AMX figures are one tile unit per core.
CPU_FLOP_PER_CYCLE: dict[str, tuple[tuple[str, int, str], ...]] = {
    "fp32": (
        ("avx512f", 64, "AVX-512 FMA: 2 ports x 16 fp32 lanes x 2"),
        ("fma", 32, "AVX2 FMA: 2 ports x 8 fp32 lanes x 2"),
    ),
    "bf16": (
        ("amx_bf16", 1024, "AMX-BF16: 512 multiply-adds per cycle"),
        ("avx512_bf16", 128, "AVX512-BF16 VDPBF16PS: 2 ports x 16 lanes x 2 pairs x 2"),
    ),
    "fp16": (
        ("amx_fp16", 1024, "AMX-FP16: 512 multiply-adds per cycle"),
        ("avx512_fp16", 128, "AVX512-FP16 FMA: 2 ports x 32 fp16 lanes x 2"),
    ),
    "int8": (
        ("amx_int8", 2048, "AMX-INT8: 1024 multiply-adds per cycle"),
        ("avx512_vnni", 256, "AVX512-VNNI VPDPBUSD: 2 ports x 16 lanes x 4 x 2"),
        ("avx_vnni", 128, "AVX-VNNI VPDPBUSD: 2 ports x 8 lanes x 4 x 2"),
    ),
}


@dataclass(frozen=True)
class Peaks:
    """Peak compute per dtype (TFLOP/s; TOP/s for int8) and memory bandwidth of one piece of hardware."""

    hardware: str
    device: str
    tflops: dict[str, float]
    bandwidth_gbs: float | None  # None: not documented (the CPU's comes from the copy calibration)
    method: str  # "datasheet" or "estimate"
    source: str  # the citation, or the formula with its inputs
    unsupported: dict[str, str] = field(default_factory=dict)
    clock: str = "datasheet"  # the clock an estimate assumes: "max (cpufreq)" or "nominal (no turbo)"
    no_units: dict[str, str] = field(default_factory=dict)  # dtype -> why this hardware has no peak for it

    def peak_statement(self, dtype: str) -> str:
        """What the peak of `dtype` is compared with, in words: '' when a peak is known, else why there is none
        (a CPU without the dtype's arithmetic units), so a table says 'no units' rather than showing NaN."""
        if self.tflops.get(dtype):
            return ""
        return self.no_units.get(dtype, f"no {dtype} peak known for {self.hardware}")

    def percent(self, dtype: str, tflops: float) -> float:
        """`tflops` as a percentage of this hardware's peak for `dtype` (NaN when no peak is known)."""
        peak = self.tflops.get(dtype)
        return 100.0 * tflops / peak if peak else math.nan

    def above_peak(self, dtype: str, tflops: float) -> str:
        """Why `tflops` cannot be a fraction of the peak when it exceeds it ('' when it does not): an estimate at
        the nominal clock is below what boosting cores reach, and a measurement cannot beat a true peak."""
        percent = self.percent(dtype, tflops)
        if not percent > 100:
            return ""
        return (
            f"{tflops:.4g} TFLOP/s is {percent:.1f}% of the {dtype} peak {self.tflops[dtype]:.4g} ({self.method}, "
            f"clock: {self.clock}): above 100%, so the peak is too low and the fraction is invalid"
        )

    def attainable_tflops(self, dtype: str, intensity: float, bandwidth_gbs: float | None = None) -> float:
        """The roofline: min(compute peak, intensity [FLOP/byte] x bandwidth), in TFLOP/s."""
        bandwidth = bandwidth_gbs or self.bandwidth_gbs
        peak = self.tflops.get(dtype, math.nan)
        return min(peak, intensity * bandwidth / 1e3) if bandwidth else peak


def hardware_table() -> dict[str, HardwareConfig]:
    """Every hardware preset (tradeoffs.presets, hardware/*.yaml) by name, validated against HardwareConfig."""
    presets = preset_files("hardware").items()
    return {name: HardwareConfig(**(yaml.safe_load(file.read_text()) or {})) for name, file in presets}


def cpu_peak_estimate(isa_flags: set[str] | list[str], threads: int, mhz: float) -> dict[str, tuple[float, str]]:
    """Peak TFLOP/s per dtype of `threads` cores at `mhz` with the given ISA flags, each with its formula.
    A dtype without native arithmetic (bf16/fp16 without AVX512-BF16/FP16 or AMX) is computed at the fp32
    rate; int8 without dot-product instructions gets no estimate."""
    flags = set(isa_flags)
    per_cycle: dict[str, tuple[int, str]] = {}
    for dtype, rules in CPU_FLOP_PER_CYCLE.items():
        match = next(((flop, how) for flag, flop, how in rules if flag in flags), None)
        if match is None and dtype in ("bf16", "fp16") and "fp32" in per_cycle:
            flop, how = per_cycle["fp32"]
            match = (flop, f"no native {dtype} arithmetic: the fp32 rate ({how})")
        if match is not None:
            per_cycle[dtype] = match
    return {
        dtype: (
            threads * mhz * 1e6 * flop / 1e12,
            f"{threads} core(s) x {mhz / 1e3:.2f} GHz x {flop} FLOP/cycle ({how})",
        )
        for dtype, (flop, how) in per_cycle.items()
    }


def cpu_units_missing(isa_flags: set[str] | list[str]) -> dict[str, str]:
    """The dtypes this CPU has no arithmetic units for (so no peak estimate), each with the statement that says
    which instructions it lacks: e.g. int8 on an AVX2-only CPU, which has no VNNI or AMX dot products."""
    flags = set(isa_flags)
    estimated = cpu_peak_estimate(flags, 1, 1000.0)
    return {
        dtype: f"no {dtype} units: this CPU has none of {', '.join(flag for flag, _, _ in rules)}"
        for dtype, rules in CPU_FLOP_PER_CYCLE.items()
        if dtype not in estimated
    }


def peaks_for(hardware: HardwareConfig, threads: int, provenance: dict[str, Any]) -> Peaks:
    """The peaks a result is compared with: the datasheet table for a GPU, the run-time estimate for a CPU
    (from the provenance's ISA flags and clock, for the threads the benchmark used)."""
    if hardware.device == "cuda":
        return Peaks(
            hardware=hardware.name,
            device="cuda",
            tflops=dict(hardware.peak_tflops),
            bandwidth_gbs=hardware.memory_bandwidth_gbs or None,
            method="datasheet",
            source=hardware.source,
            unsupported=dict(hardware.unsupported),
        )
    mhz = provenance.get("cpu_max_mhz") or provenance.get("cpu_mhz")
    if not mhz:
        raise ConfigError("hardware=cpu: the CPU clock could not be read (/proc/cpuinfo), so no peak can be estimated")
    boost = bool(provenance.get("cpu_max_mhz"))
    clock = "max clock (cpufreq)" if boost else "nominal clock (/proc/cpuinfo)"
    cores = min(threads, provenance.get("cpu_affinity") or threads)
    estimate = cpu_peak_estimate(provenance.get("isa_flags", []), cores, mhz)
    formulas = "; ".join(f"{dtype}: {formula}" for dtype, (_, formula) in estimate.items())
    return Peaks(
        hardware=f"cpu ({provenance.get('cpu_model', 'unknown')})",
        device="cpu",
        tflops={dtype: value for dtype, (value, _) in estimate.items()},
        bandwidth_gbs=None,
        method="estimate",
        source=f"estimate at the {clock}{'' if boost else ', no turbo'}: {formulas}",
        unsupported=dict(hardware.unsupported),
        clock="max (cpufreq)" if boost else "nominal (no turbo)",
        no_units=cpu_units_missing(provenance.get("isa_flags", [])),
    )


def _gpu_model(hardware_name: str) -> str:
    """The model token a GPU's name must contain for a hardware preset: h100_sxm -> H100."""
    return hardware_name.split("_")[0].upper()


def hardware_for_device(device: str) -> HardwareConfig:
    """The hardware preset of this machine's `device`: cpu, or the GPU whose model names the CUDA device."""
    table = hardware_table()
    if device == "cpu":
        return table["cpu"]
    import torch

    name = torch.cuda.get_device_name().upper().replace(" ", "")
    for hardware in table.values():
        if hardware.device == "cuda" and _gpu_model(hardware.name) in name:
            return hardware
    raise ConfigError(
        f"no hardware preset for the GPU '{torch.cuda.get_device_name()}'; add one with its peaks to "
        "tradeoffs/presets/hardware/"
    )


def check_device(hardware: HardwareConfig) -> str:
    """The torch device of `hardware`, after checking that this machine has it and that a named GPU is the
    one present (its datasheet peaks would be wrong for another)."""
    if hardware.device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise Unsupported(f"hardware={hardware.name} needs a CUDA device and torch.cuda.is_available() is False")
    name = torch.cuda.get_device_name()
    if _gpu_model(hardware.name) not in name.upper().replace(" ", ""):
        raise InvalidResult(f"hardware={hardware.name} but the device is '{name}': pick its hardware preset")
    return "cuda"
