"""The bandwidth kind: GB/s of a tensor copy and of a read-only stream (the CPU's calibration for the
roofline's memory roof), beside the hardware's documented bandwidth where it has one."""

from __future__ import annotations

from dataclasses import dataclass

from tradeoffs.bench.hardware import Peaks
from tradeoffs.bench.qdq import qdq_input, time_copies, time_read
from tradeoffs.kinds._timed import (
    BenchmarkConfig,
    Recorder,
    benchmark_resources,
    benchmark_run,
    check_log2_elements,
)
from tradeoffs.kinds.base import Kind
from tradeoffs.resources import JobResources


@dataclass
class BandwidthConfig(BenchmarkConfig):
    """Memory bandwidth of a tensor copy and a read-only stream (the bandwidth kind): a CPU's memory roof."""

    kind: str = "bandwidth"
    log2_elements: int = 22  # the fp32 tensor has 2^log2_elements values

    def __post_init__(self) -> None:
        super().__post_init__()
        check_log2_elements(self.log2_elements)


def bandwidth_resources(config: BandwidthConfig) -> JobResources:
    """Memory for the tensor, its copy and the engine's cache flush buffer."""
    return benchmark_resources(config, 64 * 2**config.log2_elements)


def _bandwidth(config: BandwidthConfig, device: str, peaks: Peaks, recorder: Recorder) -> None:
    x = qdq_input(config.log2_elements, config.seed, device)
    for t in (*time_copies(x, config.bench, device), time_read(x, config.bench, device)):
        labels = {"impl": t.name, "elements": x.numel()}
        bandwidth = t.gbs
        recorder.add("bandwidth_gbs", bandwidth, "GB/s", labels)
        if peaks.bandwidth_gbs:
            recorder.add("pct_of_bandwidth", 100 * bandwidth / peaks.bandwidth_gbs, "%", labels)
        recorder.add("elements_per_s", t.elements_per_s, "1/s", labels)
        recorder.memory(t.memory, labels)
        recorder.timing(f"copy {t.name}", t.measurement, labels)
    if not peaks.bandwidth_gbs:
        recorder.notes.append("no documented bandwidth for this hardware: this copy is its calibration")


KIND = Kind(BandwidthConfig, benchmark_run(_bandwidth), bandwidth_resources)
