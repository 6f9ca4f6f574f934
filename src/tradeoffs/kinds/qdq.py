"""The qdq kind: elements/s of a format's fake_quant (eager and compiled) beside a copy and torchao's eager
quantize-dequantize of the same format (tradeoffs.bench.qdq), with peak memory and the QSNR of the result."""

from __future__ import annotations

from dataclasses import dataclass

from tradeoffs.bench.hardware import Peaks
from tradeoffs.bench.qdq import OURS, qdq_input, time_copies, time_format
from tradeoffs.errors import ConfigError
from tradeoffs.formats import FormatSpec
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
class QdqConfig(BenchmarkConfig):
    """A format's fake_quant elements/s beside a copy and torchao's eager quantize-dequantize (the qdq kind)."""

    kind: str = "qdq"
    format: FormatSpec | None = None  # the format (conf/format/)
    log2_elements: int = 22  # the fp32 input has 2^log2_elements values
    compare_torchao: bool = True  # time torchao's eager quantize-dequantize of the same format beside it
    compiled: bool = True  # also time fake_quant through torch.compile (preallocated output and allocating)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format is None:
            raise ConfigError("format: a qdq benchmark needs a format, e.g. format=mxfp4 (names in conf/format/)")
        check_log2_elements(self.log2_elements)


def qdq_resources(config: QdqConfig) -> JobResources:
    """Memory for an eager quantize-dequantize: up to about 16 fp32 copies of its input."""
    return benchmark_resources(config, 64 * 2**config.log2_elements)


def _qdq(config: QdqConfig, device: str, peaks: Peaks, recorder: Recorder) -> None:
    x = qdq_input(config.log2_elements, config.seed, device)
    name = config.format.name
    timed, agreement = time_format(config.format, x, config.bench, device, config.compare_torchao, config.compiled)
    copy = time_copies(x, config.bench, device)
    by_name = {t.name: t for t in (*timed, *copy)}
    for t in (*timed, *copy):
        labels = {"format": name, "impl": t.name, "elements": x.numel()}
        recorder.add("elements_per_s", t.elements_per_s, "1/s", labels)
        recorder.add("gbs", t.gbs, "GB/s", labels)
        recorder.add("pct_of_copy", 100 * (t.elements_per_s / by_name["copy"].elements_per_s), "%", labels)
        recorder.add("copies_of_input", t.copies_of_input(x.numel() * x.element_size()), "", labels)
        recorder.memory(t.memory, labels)
        recorder.timing(f"qdq {name} {t.name}", t.measurement, labels)
    labels = {"format": name, "impl": "fake_quant", "elements": x.numel()}
    if "torchao" in by_name:
        for ours in (t for t in timed if t.name in OURS):
            ratio = ours.elements_per_s / by_name["torchao"].elements_per_s
            recorder.add("speedup_vs_torchao", ratio, "x", {**labels, "impl": ours.name})
        recorder.add("torchao_max_abs_diff", agreement.max_abs_diff, "", labels)
        recorder.add("torchao_mismatch_fraction", agreement.mismatch_fraction, "", labels)
    elif config.compare_torchao:
        recorder.notes.append(f"torchao has no counterpart of {name}")
    recorder.add("qsnr_db", agreement.qsnr_db, "dB", labels)


KIND = Kind(QdqConfig, benchmark_run(_qdq), qdq_resources)
