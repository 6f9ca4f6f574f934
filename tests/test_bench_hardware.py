"""The hardware table of the hardware presets (tradeoffs.presets) and the CPU peak estimate."""

from __future__ import annotations

import math

import pytest

from tradeoffs.bench.hardware import Peaks, cpu_peak_estimate, cpu_units_missing, hardware_table, peaks_for
from tradeoffs.hardware import PEAK_DTYPES, HardwareConfig

GPU_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")


def gpus():
    return {name: hw for name, hw in hardware_table().items() if hw.device == "cuda"}


def test_the_table_has_the_gpus_the_methodology_names():
    assert {"a100", "h100_sxm", "h200", "l4"} <= set(gpus())
    assert hardware_table()["cpu"].device == "cpu" and not hardware_table()["cpu"].peak_tflops


@pytest.mark.parametrize("name", ["a100", "h100_sxm", "h200", "l4"])
def test_every_gpu_has_a_peak_or_a_reason_for_each_dtype_bandwidth_and_a_source(name):
    hw = gpus()[name]
    for dtype in GPU_DTYPES:
        assert (dtype in hw.peak_tflops) != (dtype in hw.unsupported), dtype
    assert {"bf16", "fp16"} <= set(hw.peak_tflops)
    assert hw.memory_bandwidth_gbs > 0
    assert "datasheet" in hw.source and "https://www.nvidia.com/" in hw.source
    assert set(hw.peak_tflops) <= set(PEAK_DTYPES)


def test_gpu_peaks_are_the_dense_datasheet_values():
    table = gpus()
    assert table["a100"].peak_tflops == {"fp64": 19.5, "fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624}
    assert "fp8" in table["a100"].unsupported  # Ampere: no FP8 tensor cores
    assert table["a100"].memory_bandwidth_gbs == 2039
    for name in ("h100_sxm", "h200"):  # one GH100 die: same compute
        assert table[name].peak_tflops["bf16"] == 989.4 and table[name].peak_tflops["fp8"] == 1978.9
        assert table[name].peak_tflops["tf32"] == 494.7 and table[name].peak_tflops["fp32"] == 67
    assert (table["h100_sxm"].memory_bandwidth_gbs, table["h200"].memory_bandwidth_gbs) == (3350, 4800)
    assert table["l4"].peak_tflops["bf16"] == 121 and table["l4"].peak_tflops["fp8"] == 242.5
    assert table["l4"].memory_bandwidth_gbs == 300


@pytest.mark.parametrize("name", ["a100", "h100_sxm", "h200", "l4"])
def test_peak_ordering_is_sane(name):
    peaks = gpus()[name].peak_tflops
    assert peaks["fp32"] <= peaks["tf32"] <= peaks["bf16"] == peaks["fp16"] <= peaks["int8"]
    assert peaks.get("fp8", 2 * peaks["bf16"]) == pytest.approx(2 * peaks["bf16"], rel=0.01)  # datasheets round
    assert 10 < peaks["bf16"] < 5000


def test_cpu_estimate_from_isa_flags():
    flags = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni"]
    estimate = cpu_peak_estimate(flags, threads=2, mhz=2300)
    assert estimate["fp32"][0] == pytest.approx(2 * 2.3e9 * 64 / 1e12)
    assert estimate["bf16"][0] == pytest.approx(2 * estimate["fp32"][0])
    assert estimate["int8"][0] == pytest.approx(4 * estimate["fp32"][0])
    assert "2 core(s) x 2.30 GHz x 64 FLOP/cycle" in estimate["fp32"][1]
    amx = cpu_peak_estimate([*flags, "amx_tile", "amx_bf16", "amx_int8"], threads=1, mhz=2000)
    assert amx["bf16"][0] == pytest.approx(2e9 * 1024 / 1e12) and amx["int8"][0] == pytest.approx(2e9 * 2048 / 1e12)
    avx2 = cpu_peak_estimate(["avx2", "fma"], threads=4, mhz=3000)
    assert avx2["bf16"][0] == avx2["fp32"][0] and "no native bf16" in avx2["bf16"][1]
    assert "int8" not in avx2


def test_a_cpu_without_a_dtypes_units_states_it_instead_of_a_nan_peak():
    """An AVX2-only CPU (AMD EPYC family 25 without AVX-512) has no int8 dot-product units: its peaks say so."""
    avx2_only = {"isa_flags": ["avx2", "fma"], "cpu_mhz": 2400.0, "cpu_affinity": 2, "cpu_model": "AVX2 CPU"}
    peaks = peaks_for(HardwareConfig(), threads=2, provenance=avx2_only)
    assert "int8" not in peaks.tflops and peaks.peak_statement("fp32") == ""
    statement = peaks.peak_statement("int8")
    assert statement.startswith("no int8 units") and "avx512_vnni" in statement and "amx_int8" in statement
    assert cpu_units_missing(["avx2", "fma", "avx512f", "avx512_vnni"]) == {}  # bf16/fp16 run at the fp32 rate
    assert set(cpu_units_missing([])) == {"fp32", "bf16", "fp16", "int8"}


def test_peaks_for_cpu_state_their_method_and_gpus_their_datasheet():
    provenance = {"isa_flags": ["avx512f"], "cpu_mhz": 2000.0, "cpu_affinity": 2, "cpu_model": "Test CPU"}
    peaks = peaks_for(HardwareConfig(), threads=4, provenance=provenance)  # capped at the 2 usable cores
    assert peaks.method == "estimate" and peaks.tflops["fp32"] == pytest.approx(2 * 2e9 * 64 / 1e12)
    assert "nominal clock" in peaks.source and peaks.bandwidth_gbs is None
    h100 = peaks_for(gpus()["h100_sxm"], threads=1, provenance={})
    assert h100.method == "datasheet" and h100.bandwidth_gbs == 3350
    assert h100.percent("bf16", 494.7) == pytest.approx(50.0)
    assert math.isnan(h100.percent("fp4", 1.0))


def test_roofline_attainable_throughput():
    peaks = Peaks("x", "cuda", {"bf16": 100.0}, 1000.0, "datasheet", "test")
    assert peaks.attainable_tflops("bf16", 10.0) == pytest.approx(10.0)  # memory-bound: 10 FLOP/B x 1 TB/s
    assert peaks.attainable_tflops("bf16", 1e4) == 100.0  # compute-bound
    assert peaks.attainable_tflops("bf16", 10.0, bandwidth_gbs=500.0) == pytest.approx(5.0)


def test_a_benchmark_job_has_the_machine_to_itself():
    import os

    from tradeoffs.pipeline.plan import job_resources

    gemm = job_resources("gemm", {"shapes": [[4096, 4096, 4096]], "hardware": {"threads": 0}})
    assert gemm.threads == os.cpu_count() and gemm.group is None and gemm.gpus == 0
    assert gemm.mem_mb >= 1500 + 40 * 3 * 4096**2 / 1e6
    pinned = job_resources("qdq", {"format": {"element": "int8"}, "log2_elements": 26, "hardware": {"threads": 1}})
    assert pinned.threads == 1 and pinned.mem_mb > 64 * 2**26 / 1e6
    assert job_resources("bandwidth", {"hardware": {"device": "cuda"}}).gpus == 1
