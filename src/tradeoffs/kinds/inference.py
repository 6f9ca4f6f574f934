"""The inference kind: prefill and decode tokens/s and per-token latency of greedy generation with a model
(tradeoffs.bench.inference), as a percentage of the peak, with its logits error and token agreement against fp32."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tradeoffs.bench.hardware import Peaks
from tradeoffs.bench.inference import (
    INFERENCE_DTYPES,
    accuracy_against_fp32,
    generation_run,
    inference_flops,
    load_model,
    prompt_tokens,
)
from tradeoffs.bench.memory import track_peak_memory
from tradeoffs.bench.timing import Stats, StepTimer, measure_steps
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.kinds._timed import BenchmarkConfig, Recorder, benchmark_resources, benchmark_run
from tradeoffs.kinds.base import Kind
from tradeoffs.models import ModelConfig
from tradeoffs.resources import JobResources


@dataclass
class InferenceConfig(BenchmarkConfig):
    """Greedy generation with a model (the inference kind): prefill and decode tokens/s, per-token latency."""

    kind: str = "inference"
    model: ModelConfig | None = None  # the model (conf/model/)
    dtype: str = "fp32"  # one of INFERENCE_DTYPES
    batch_size: int = 1  # sequences generated together
    prompt_length: int = 64  # prompt tokens (prefill)
    new_tokens: int = 32  # greedy tokens generated (the first from the prefill)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("dtype", self.dtype, INFERENCE_DTYPES)
        if self.model is None:
            raise ConfigError("model: an inference benchmark needs a model, e.g. model=gpt-10m (conf/model/)")
        check_positive("batch_size", self.batch_size)
        check_positive("prompt_length", self.prompt_length)
        if self.new_tokens < 2:
            raise ConfigError(f"new_tokens must be >= 2 (one from the prefill, then decode), got {self.new_tokens}")
        if self.prompt_length + self.new_tokens > self.model.context_length:
            raise ConfigError(
                f"prompt_length + new_tokens = {self.prompt_length + self.new_tokens} exceeds "
                f"model.context_length={self.model.context_length}"
            )


def inference_resources(config: InferenceConfig) -> JobResources:
    """Memory for the model in fp32 and its reference copy, its KV cache and activations (within 1500 MB for
    the ladder's small models)."""
    return benchmark_resources(config, 0)


def _latency_metrics(recorder: Recorder, prefix: str, stats: Stats, labels: dict[str, Any]) -> None:
    """p50/p90/p99 of a latency with the count, tail percentiles flagged when indicative."""
    labels = {**labels, "noise": stats.noise, "count": stats.count}
    recorder.add(f"{prefix}_p50_s", stats.median, "s", labels)
    recorder.add(f"{prefix}_p90_s", stats.p90, "s", {**labels, "indicative": stats.p90_indicative})
    recorder.add(f"{prefix}_p99_s", stats.p99, "s", {**labels, "indicative": stats.p99_indicative})


def _inference(config: InferenceConfig, device: str, peaks: Peaks, recorder: Recorder) -> None:
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


KIND = Kind(InferenceConfig, benchmark_run(_inference), inference_resources)
