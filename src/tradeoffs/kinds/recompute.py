"""The recompute kind: one GPT's training step (forward + backward) without and with full per-block activation
recomputation (Megatron-LM; Korthikanti et al. 2022; tradeoffs.train.recompute, docs/memory.md), both in the
same job so the two are measured under the same machine state.

Each mode runs in a fresh fork on a CPU (its RSS high-water mark is its own). Metrics, labelled `recompute`
(off/on): `saved_bytes` (activations saved for backward, exact, parameters left out), `peak_bytes`,
`time_median_s`, `tokens_per_s`, `model_flops_per_token` and `hardware_flops_per_token`, `mfu` and `hfu`
(against the hardware's peak for fp32); and the ratios on/off: `time_ratio` (with an interval from the two
timings' IQR/median), `saved_ratio`, `peak_ratio`, `mfu_ratio`, `hfu_ratio`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from tradeoffs.bench.hardware import check_device, peaks_for
from tradeoffs.bench.saved import in_fork
from tradeoffs.bench.timing import BenchConfig
from tradeoffs.errors import ConfigError, check_positive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.models import ModelConfig
from tradeoffs.provenance import collect_provenance
from tradeoffs.resources import JobResources, gpus, threads
from tradeoffs.results import Metric, Outcome, write_json_atomic
from tradeoffs.train.recompute import (
    RecomputeCase,
    hardware_flops_per_token,
    measure_recompute,
    model_flops_per_token,
    utilisation,
)


@dataclass
class RecomputeConfig(ExperimentConfig):
    """A GPT (`model`: depth model.n_layer, sequence length model.context_length) and the batch of the timed
    step, measured without and with per-block recomputation."""

    kind: str = "recompute"
    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = 4
    bench: BenchConfig = field(default_factory=BenchConfig)

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size)
        if self.model.family != "gpt":
            raise ConfigError(
                f"model.family: recompute checkpoints the project's GPT blocks; got {self.model.family!r}"
            )


def _mode_metrics(case: RecomputeCase, config: RecomputeConfig, peak_tflops: float) -> list[Metric]:
    labels = {"recompute": "on" if case.recompute else "off"}
    timing = case.timing
    tokens_per_s = config.batch_size * config.model.context_length / timing["median"]
    model_flops = model_flops_per_token(config.model)
    hardware_flops = hardware_flops_per_token(config.model, case.recompute)
    timing_labels = {**labels, "noise": timing["noise"], "stop_reason": timing["stop_reason"]}
    return [
        Metric("saved_bytes", case.saved_bytes, "B", {**labels, "tensors": case.saved_tensors}),
        Metric("peak_bytes", case.peak_bytes, "B", {**labels, "source": case.peak_source, "reset": case.peak_reset}),
        Metric("time_median_s", timing["median"], "s", timing_labels),
        Metric("time_iqr_over_median", timing["iqr_over_median"], "", timing_labels),
        Metric("tokens_per_s", tokens_per_s, "tokens/s", labels),
        Metric("model_flops_per_token", model_flops, "FLOP", labels),
        Metric("hardware_flops_per_token", hardware_flops, "FLOP", labels),
        Metric("mfu", utilisation(model_flops, tokens_per_s, peak_tflops) if peak_tflops else math.nan, "", labels),
        Metric("hfu", utilisation(hardware_flops, tokens_per_s, peak_tflops) if peak_tflops else math.nan, "", labels),
    ]


def run(config: RecomputeConfig, job: Job) -> Outcome:
    device = check_device(config.hardware)
    peaks = peaks_for(config.hardware, torch.get_num_threads(), collect_provenance())
    peak_tflops = peaks.tflops.get("fp32", math.nan)
    fork = device == "cpu" and hasattr(os, "fork")
    cases = {}
    for recompute in (False, True):

        def case(recompute=recompute) -> RecomputeCase:
            return measure_recompute(config.model, config.batch_size, recompute, config.bench, device, config.seed)

        cases[recompute] = in_fork(case) if fork else case()
    metrics = [m for c in cases.values() for m in _mode_metrics(c, config, peak_tflops)]
    values = {(m.name, m.labels["recompute"]): m.value for m in metrics}
    off, on = cases[False], cases[True]
    spread = math.hypot(off.timing["iqr_over_median"], on.timing["iqr_over_median"])
    ratio = on.timing["median"] / off.timing["median"]
    metrics.append(
        Metric(
            "time_ratio",
            ratio,
            "x",
            {"interval_low": ratio * math.exp(-spread), "interval_high": ratio * math.exp(spread)},
        )
    )
    for name in ("saved", "peak", "mfu", "hfu"):
        key = f"{name}_bytes" if name in ("saved", "peak") else name
        metrics.append(Metric(f"{name}_ratio", values[(key, "on")] / values[(key, "off")], "x", {}))
    write_json_atomic(
        job.out_dir / "samples.json", [{"recompute": c.recompute, "samples_s": c.samples_s} for c in cases.values()]
    )
    problems = [
        f"recompute {'on' if c.recompute else 'off'}: peak RSS not reset" for c in cases.values() if not c.peak_reset
    ]
    return Outcome(status="ok", message="; ".join(problems), metrics=metrics, artifacts=["samples.json"])


def resources(config: RecomputeConfig) -> JobResources:
    """One timing job with the cores it names (one by default), never grouped."""
    return JobResources(threads=threads(config, default=1), mem_mb=2000, runtime=30, gpus=gpus(config), group=None)


KIND = Kind(RecomputeConfig, run, resources)
