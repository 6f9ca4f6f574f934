"""The bench kind: hardware throughput timed by the engine (tradeoffs.bench.timing), with peak memory, the
percentage of the hardware's peak and, for quantized variants, the accuracy next to the speed.

benchmark=gemm   TFLOP/s of a dtype over [M, K, N] shapes (tradeoffs.bench.gemm)
benchmark=qdq    elements/s of a format's fake_quant beside a copy and torchao (tradeoffs.bench.qdq)
benchmark=copy   memory bandwidth of a tensor copy: the CPU's calibration for the roofline
benchmark=inference  prefill and decode tokens/s and per-token latency of greedy generation with a model
                 (tradeoffs.bench.inference), with its logits error and token agreement against fp32

Raw samples go to samples.json beside result.json. A case below its minimum count or time, recompiled
while timed, or failing its accuracy gate makes the result `invalid` (metrics kept, reasons in the message).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from tradeoffs.bench.gemm import ACCURACY_GATE, build_case, check_supported
from tradeoffs.bench.hardware import Peaks, check_device, peaks_for
from tradeoffs.bench.inference import (
    accuracy_against_fp32,
    generation_run,
    inference_flops,
    load_model,
    prompt_tokens,
)
from tradeoffs.bench.memory import PeakMemory, track_peak_memory
from tradeoffs.bench.qdq import OURS, qdq_input, time_copies, time_format, time_read
from tradeoffs.bench.timing import Measurement, Stats, StepTimer, measure, measure_steps
from tradeoffs.config import BenchExperimentConfig
from tradeoffs.errors import Unsupported
from tradeoffs.provenance import collect_provenance
from tradeoffs.results import Metric, Outcome, write_json_atomic


class _Recorder:
    """Collects metrics, raw samples and problems of the cases of one run."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []
        self.samples: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.notes: list[str] = []

    def add(self, name: str, value: float | None, unit: str, labels: dict[str, Any]) -> None:
        self.metrics.append(Metric(name, math.nan if value is None else float(value), unit, dict(labels)))

    def timing(self, case: str, measurement: Measurement, labels: dict[str, Any]) -> None:
        """The engine's statistics as metrics (labelled with the noise flag and stop reason) and its samples."""
        stats = measurement.stats
        timing_labels = {
            **labels,
            "noise": stats.noise,
            "stop_reason": measurement.stop_reason,
            "calls_per_sample": measurement.calls_per_sample,
            "threads": measurement.threads,
        }
        tail = {"p90": stats.p90_indicative, "p99": stats.p99_indicative}
        self.add("time_median_s", stats.median, "s", timing_labels)
        for name in ("p90", "p99"):
            self.add(f"time_{name}_s", getattr(stats, name), "s", {**timing_labels, "indicative": tail[name]})
        self.add("time_iqr_over_median", stats.iqr_over_median, "", timing_labels)
        self.add("time_cv", stats.cv, "", timing_labels)
        self.add("samples", stats.count, "", timing_labels)
        self.add("cold_start_s", measurement.cold_start_s, "s", timing_labels)
        self.samples.append({"case": case, **labels, **measurement.summary(), "samples_s": measurement.samples_s})
        self.problems.extend(f"{case}: {problem}" for problem in measurement.problems)

    def memory(self, memory: PeakMemory, labels: dict[str, Any]) -> None:
        self.add("peak_rss_growth_bytes", memory.rss_growth, "B", {**labels, "reset": memory.rss_peak_reset})
        if memory.cuda_growth is not None:
            self.add("cuda_peak_growth_bytes", memory.cuda_growth, "B", labels)


def run(config: BenchExperimentConfig, out_dir: Path) -> Outcome:
    device = check_device(config.hardware)
    peaks = peaks_for(config.hardware, torch.get_num_threads(), collect_provenance())
    recorder = _Recorder()
    runners = {"gemm": _gemm, "qdq": _qdq, "copy": _copy, "inference": _inference}
    runners[config.benchmark](config, device, peaks, recorder)
    write_json_atomic(out_dir / "samples.json", recorder.samples)
    message = "; ".join(recorder.problems + recorder.notes)
    status = "invalid" if recorder.problems else "ok"
    return Outcome(status=status, message=message, metrics=recorder.metrics, artifacts=["samples.json"])


def _gemm(config: BenchExperimentConfig, device: str, peaks: Peaks, recorder: _Recorder) -> None:
    check_supported(config.dtype, device, config.hardware)
    ran = 0
    for m, k, n in config.shapes:
        labels = {"m": m, "k": k, "n": n, "shape": f"{m}x{k}x{n}"}
        try:
            case = build_case(config.dtype, (m, k, n), device, config.seed)
        except Unsupported as reason:
            recorder.add("supported", 0, "", {**labels, "reason": str(reason)})
            recorder.notes.append(f"{labels['shape']} unsupported: {reason}")
            continue
        ran += 1
        with case.precision():
            measurement = measure(case.fn, config.bench, device=device)
            with track_peak_memory(device) as memory:
                case.fn()
        labels["kernel"] = case.kernel
        tflops = case.flops / measurement.stats.median / 1e12
        peak = peaks.tflops.get(case.peak_dtype)
        recorder.add("supported", 1, "", labels)
        recorder.add("tflops", tflops, "TFLOP/s", labels)
        recorder.add(
            "pct_of_peak",
            peaks.percent(case.peak_dtype, tflops),
            "%",
            {
                **labels,
                "peak_dtype": case.peak_dtype,
                "peak_tflops": peak,
                "peak_method": peaks.method,
            },
        )
        recorder.add("arithmetic_intensity", case.intensity, "FLOP/B", labels)
        gbs = case.bytes / measurement.stats.median / 1e9
        recorder.add("gbs", gbs, "GB/s", labels)
        if peaks.bandwidth_gbs:
            recorder.add("pct_of_bandwidth", 100 * gbs / peaks.bandwidth_gbs, "%", labels)
        recorder.add("output_rel_error", case.output_error, "", labels)
        if not case.output_error <= ACCURACY_GATE[case.dtype]:
            recorder.problems.append(
                f"{labels['shape']}: output error {case.output_error:.3g} fails the accuracy gate "
                f"{ACCURACY_GATE[case.dtype]} of {case.dtype}"
            )
        recorder.memory(memory, labels)
        recorder.timing(f"gemm {case.dtype} {labels['shape']}", measurement, labels)
    if not ran:
        raise Unsupported("; ".join(recorder.notes))
    recorder.notes.append(f"peaks: {peaks.source}")


def _qdq(config: BenchExperimentConfig, device: str, peaks: Peaks, recorder: _Recorder) -> None:
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


def _copy(config: BenchExperimentConfig, device: str, peaks: Peaks, recorder: _Recorder) -> None:
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


def _latency_metrics(recorder: _Recorder, prefix: str, stats: Stats, labels: dict[str, Any]) -> None:
    """p50/p90/p99 of a latency with the count, tail percentiles flagged when indicative."""
    labels = {**labels, "noise": stats.noise, "count": stats.count}
    recorder.add(f"{prefix}_p50_s", stats.median, "s", labels)
    recorder.add(f"{prefix}_p90_s", stats.p90, "s", {**labels, "indicative": stats.p90_indicative})
    recorder.add(f"{prefix}_p99_s", stats.p99, "s", {**labels, "indicative": stats.p99_indicative})


def _inference(config: BenchExperimentConfig, device: str, peaks: Peaks, recorder: _Recorder) -> None:
    model_config, batch, prompt_length, new = config.model, config.batch_size, config.prompt_length, config.new_tokens
    started = time.perf_counter()
    model = load_model(model_config, config.dtype, device, config.seed)
    load_s = time.perf_counter() - started
    prompt = prompt_tokens(model_config, batch, prompt_length, config.seed, device)
    run = generation_run(model, prompt, new)
    measurement = measure_steps(run, config.bench, device=device)
    with track_peak_memory(device) as memory:
        run(StepTimer(device))
    labels = {"model": model_config.name, "batch": batch, "prompt": prompt_length, "new_tokens": new}
    flops = inference_flops(model_config, batch, prompt_length, new)
    prefill, decode = measurement.per_run("prefill"), measurement.per_run("decode")
    recorder.add("load_s", load_s, "s", labels)
    recorder.add("cold_start_s", measurement.cold_start_s, "s", labels)
    recorder.add("prefill_tokens_per_s", batch * prompt_length / prefill.median, "1/s", labels)
    recorder.add("decode_tokens_per_s", batch * (new - 1) / decode.median, "1/s", labels)
    for phase, stats, work in (("prefill", prefill, flops.prefill), ("decode", decode, flops.decode)):
        tflops = work / stats.median / 1e12
        recorder.add(f"{phase}_tflops", tflops, "TFLOP/s", labels)
        recorder.add(
            f"{phase}_pct_of_peak",
            peaks.percent(config.dtype, tflops),
            "%",
            {**labels, "peak_tflops": peaks.tflops.get(config.dtype), "peak_method": peaks.method},
        )
    _latency_metrics(recorder, "prefill_latency", prefill, labels)
    _latency_metrics(recorder, "token_latency", measurement.per_step("decode"), labels)
    recorder.add("runs", prefill.count, "", {**labels, "stop_reason": measurement.stop_reason})
    recorder.memory(memory, labels)
    if config.dtype != "fp32":
        reference = load_model(model_config, "fp32", device, config.seed)
        accuracy = accuracy_against_fp32(model, reference, prompt, new)
        recorder.add("logits_rel_error", accuracy.logits_rel_error, "", labels)
        recorder.add("token_agreement", accuracy.token_agreement, "", labels)
    recorder.samples.append({"case": "inference", **labels, "steps_s": measurement.steps_s})
    recorder.problems.extend(f"inference: {problem}" for problem in measurement.problems)
    recorder.notes.append(f"peaks: {peaks.source}")
