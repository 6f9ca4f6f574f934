"""Provenance of a run: host, CPU and ISA flags, GPU and driver, software versions, code commit."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "hydra-core",
    "omegaconf",
    "snakemake",
    "ml_dtypes",
    "matplotlib",
    "seaborn",
    "tradeoffs",
)
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "avx_vnni",
    "sve",
    "sve2",
    "asimd",
)


def _cpu_info() -> dict[str, Any]:
    model, flags, mhz = platform.processor() or platform.machine(), set(), None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
            elif key == "cpu MHz" and mhz is None:
                mhz = float(value)
    max_khz_path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    governor_path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa_flags": sorted(f for f in ISA_FLAGS if f in flags),
        "cpu_mhz": mhz,  # /proc/cpuinfo (the nominal clock under most hypervisors)
        "cpu_max_mhz": int(max_khz_path.read_text()) / 1000 if max_khz_path.is_file() else None,
        "cpu_governor": governor_path.read_text().strip() if governor_path.is_file() else None,
    }


def _gpu_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {"gpu": None}
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    info: dict[str, Any] = {
        "gpu": props.name,
        "gpu_count": torch.cuda.device_count(),
        "gpu_memory_gb": round(props.total_memory / 2**30, 2),
        "gpu_capability": f"{props.major}.{props.minor}",
        "cuda_version": torch.version.cuda,
    }
    query = "driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.limit"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", f"--id={index}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        values = [v.strip() for v in out.split(",")]
        info.update(
            dict(
                zip(
                    [
                        "gpu_driver",
                        "gpu_clock_sm_mhz",
                        "gpu_clock_sm_max_mhz",
                        "gpu_clock_mem_mhz",
                        "gpu_temperature_c",
                        "gpu_power_limit_w",
                    ],
                    values,
                    strict=False,
                )
            )
        )
    except (OSError, subprocess.SubprocessError):
        info["gpu_driver"] = None
    return info


def _git_info() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.cache
def _static() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **_cpu_info(),
        **_git_info(),
        "packages": _package_versions(),
    }


def collect_provenance() -> dict[str, Any]:
    """Everything about the machine, software and code that a result depends on (cached per process,
    except the thread count and GPU state, which are read on each call)."""
    info = dict(_static())
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the ISA of its CPU kernels
    except ImportError:
        info["torch_threads"] = info["torch_cpu_capability"] = None
    info.update(_gpu_info())
    info["slurm_job_id"] = os.environ.get("SLURM_JOB_ID")
    return info
