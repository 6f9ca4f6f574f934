"""Peak memory of a benchmark: process RSS (the kernel's high-water mark, reset before the benchmark) and, on
CUDA, the caching allocator's peak.

Freed memory that the C allocator keeps would be reused without raising RSS, hiding a benchmark's own
allocations; so free memory is first returned to the system (glibc's malloc_trim) and the peak is measured
on a single call, apart from the timed calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int | None:
    if not _STATUS.is_file():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def _release_free_memory() -> None:
    """Return the C heap's free memory to the system (glibc only; elsewhere a no-op)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(name).malloc_trim(0)


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@dataclass
class PeakMemory:
    """Memory of one benchmark: RSS before and at its peak, and the CUDA allocator's peak, in bytes."""

    rss_before: int | None = None
    rss_peak: int | None = None
    rss_peak_reset: bool = False  # False: the peak is the process's since it started (an upper bound)
    cuda_before: int | None = None
    cuda_peak: int | None = None

    @property
    def rss_growth(self) -> int | None:
        """Peak RSS above the RSS at the start (the benchmark's own allocations)."""
        if self.rss_before is None or self.rss_peak is None:
            return None
        return max(self.rss_peak - self.rss_before, 0)

    @property
    def cuda_growth(self) -> int | None:
        if self.cuda_before is None or self.cuda_peak is None:
            return None
        return self.cuda_peak - self.cuda_before


@contextlib.contextmanager
def track_peak_memory(device: str = "cpu") -> Iterator[PeakMemory]:
    """Measure peak RSS (and CUDA allocator) memory of the enclosed block; filled in on exit."""
    memory = PeakMemory()
    _release_free_memory()
    memory.rss_peak_reset = _reset_rss_peak()
    before = _status_kib("VmRSS")
    memory.rss_before = None if before is None else before * 1024
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        memory.cuda_before = torch.cuda.memory_allocated()
    try:
        yield memory
    finally:
        if device == "cuda":
            torch.cuda.synchronize()
            memory.cuda_peak = torch.cuda.max_memory_allocated()
        peak = _status_kib("VmHWM")
        memory.rss_peak = None if peak is None else peak * 1024
