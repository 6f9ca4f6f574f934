"""The reproducibility study: greedy decoding of the same prompts under several reduction orders and
precisions, compared token by token with a reference order of the same precision.

    config = NondeterminismConfig()                       # defaults: 16 prompts x 32 new tokens, 4 precisions
    prompts = prompt_windows(dataset.splits[config.split], config.prompts, config.prompt_length, config.seed)
    result = run_study(model, prompts, config)            # a GPT or HFCausalLM (prefill/decode_step, lm_head)
    rows = result.metric_rows()                           # MetricRow(name, value, unit, labels) per number
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from tradeoffs.data import SPLITS, random_batch
from tradeoffs.errors import ConfigError, Unsupported, check_choice, check_positive
from tradeoffs.nondeterminism.divergence import PromptDivergence, agreement_by_position, compare_prompt
from tradeoffs.nondeterminism.orders import ReductionOrder, parse_order, reduction_order
from tradeoffs.nondeterminism.precision import PRECISIONS, cast_model

DEVICES = ("cpu", "cuda")
REPEAT = "repeat"


@dataclass
class NondeterminismConfig:
    """The study: which prompts, how many new tokens, which precisions, and the reference and perturbed
    reduction orders (`key=value,...` texts, tradeoffs.nondeterminism.orders; perturbations override the
    reference's fields)."""

    prompts: int = 16
    prompt_length: int = 32
    new_tokens: int = 32
    split: str = "validation"
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "bf16", "layercast"])
    reference: str = "batch=8,threads=1,attention=math"
    perturbations: list[str] = field(
        default_factory=lambda: [
            REPEAT,
            "batch=1",
            "shuffle=1",
            "split_k=2",
            "split_k=8",
            "split_k=8,partials=rounded",
            "threads=2",
            "attention=native",
            "blas=cublaslt",
        ]
    )
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("prompts", "prompt_length", "new_tokens"):
            check_positive(key, getattr(self, key))
        check_choice("split", self.split, SPLITS)
        check_choice("device", self.device, DEVICES)
        if not self.precisions:
            raise ConfigError(f"precisions: give at least one of {', '.join(PRECISIONS)}")
        for precision in self.precisions:
            check_choice("precisions", precision, PRECISIONS)
        if not self.perturbations:
            raise ConfigError("perturbations: give at least one reduction order, e.g. split_k=2")
        labels = [label for label, _ in self.perturbation_orders]
        for spec, label in zip(self.perturbations, labels, strict=True):
            if label == "default":
                raise ConfigError(
                    f"perturbations: {spec!r} changes nothing of the reference {self.reference!r} "
                    f"(write {REPEAT!r} to run the reference order again)"
                )
        if len(set(labels)) != len(labels):
            raise ConfigError(f"perturbations: {self.perturbations} lists the same reduction order twice")
        if len(set(self.precisions)) != len(self.precisions):
            raise ConfigError(f"precisions: {self.precisions} lists a precision twice")
        if self.reference_order.blas != "default" and self.device != "cuda":
            raise ConfigError(f"reference: {self.reference!r} selects a CUDA BLAS library; device is {self.device}")

    @property
    def reference_order(self) -> ReductionOrder:
        return parse_order(self.reference, "reference")

    @property
    def perturbation_orders(self) -> list[tuple[str, ReductionOrder]]:
        """(label, order) of each perturbation: its overrides of the reference, or `repeat` (the reference
        order run again: run-to-run nondeterminism, a control)."""
        reference = self.reference_order
        orders = []
        for spec in self.perturbations:
            order = reference if spec.strip() == REPEAT else parse_order(spec, "perturbations", reference)
            orders.append((REPEAT if spec.strip() == REPEAT else order.spec(reference), order))
        return orders


def prompt_windows(tokens: np.ndarray, count: int, length: int, seed: int) -> Tensor:
    """`count` prompts of `length` tokens at seeded random starts of a split's token array (int64, on the
    CPU): the same seed gives the same prompts on any machine."""
    inputs, _ = random_batch(tokens, count, length, torch.Generator().manual_seed(seed))
    return inputs


@dataclass
class GreedyRun:
    """The new tokens (prompts, new) and the output head's logits before each of them (prompts, new, vocab;
    fp64 for an fp64 model, fp32 otherwise, on the CPU), and how long decoding took."""

    tokens: Tensor
    logits: Tensor
    seconds: float


def batch_groups(count: int, order: ReductionOrder, seed: int) -> list[tuple[list[int], int]]:
    """The rows of each forward batch under `order` and how many of them are kept: consecutive prompts (or a
    seeded permutation with shuffle), `order.batch` rows each; a short last batch is filled with the first
    prompts of the sequence, whose rows are computed and discarded."""
    sequence = list(range(count))
    if order.shuffle:
        sequence = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    groups = []
    for start in range(0, count, order.batch):
        kept = sequence[start : start + order.batch]
        groups.append((kept + [sequence[i % count] for i in range(order.batch - len(kept))], len(kept)))
    return groups


class _HeadLogits:
    """Keeps the output head's last-position logits at their own precision (GPT returns them as fp32)."""

    def __init__(self, model: nn.Module):
        self.latest: Tensor | None = None
        head = getattr(model, "lm_head", None)
        self.handle = head.register_forward_hook(self._keep) if isinstance(head, nn.Module) else None

    def _keep(self, _module, _inputs, output: Tensor) -> None:
        self.latest = output[:, -1] if output.dim() == 3 else output

    def logits(self, returned: Tensor) -> Tensor:
        kept = self.latest if self.handle is not None else returned
        return kept.to(torch.promote_types(kept.dtype, torch.float32))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.remove()


@torch.no_grad()
def greedy_decode(model: nn.Module, prompts: Tensor, new_tokens: int, order: ReductionOrder, seed: int) -> GreedyRun:
    """Greedy decoding of `new_tokens` after each prompt (prompts (n, length) int64) through the model's
    prefill/decode_step, batched and with the threads, kernels and split-K of `order`."""
    device = next(model.parameters()).device
    head = _HeadLogits(model)
    tokens = torch.zeros(len(prompts), new_tokens, dtype=torch.int64)
    logits: Tensor | None = None
    start = time.perf_counter()
    try:
        with reduction_order(order):
            for rows, kept in batch_groups(len(prompts), order, seed):
                returned, cache = model.prefill(prompts[rows].to(device))
                for step in range(new_tokens):
                    step_logits = head.logits(returned)
                    token = step_logits.argmax(-1)
                    if logits is None:
                        logits = torch.zeros(len(prompts), new_tokens, step_logits.shape[-1], dtype=step_logits.dtype)
                    tokens[rows[:kept], step] = token[:kept].cpu()
                    logits[rows[:kept], step] = step_logits[:kept].cpu()
                    if step + 1 < new_tokens:
                        returned, cache = model.decode_step(token, cache)
        if device.type == "cuda":
            torch.cuda.synchronize()
    finally:
        head.close()
    return GreedyRun(tokens, logits, time.perf_counter() - start)


class MetricRow(NamedTuple):
    """One number of the study, shaped like tradeoffs.results.Metric (`Metric(*row)`)."""

    name: str
    value: float
    unit: str
    labels: dict[str, Any]


@dataclass
class Comparison:
    """Every prompt's divergence from the reference order at one precision under one perturbation."""

    precision: str
    perturbation: str
    prompts: list[PromptDivergence]
    seconds: float

    @property
    def identical_fraction(self) -> float:
        """Share of prompts whose new tokens equal the reference's to the end."""
        return sum(p.position is None for p in self.prompts) / len(self.prompts)

    @property
    def bitwise_identical_fraction(self) -> float:
        """Share of prompts whose logits equal the reference's bit for bit (the order changed no sum)."""
        return sum(p.max_logit_difference == 0 for p in self.prompts) / len(self.prompts)

    def agreement(self, new_tokens: int) -> list[float]:
        """Share of prompts still identical to the reference through each generated position."""
        return agreement_by_position([p.position for p in self.prompts], new_tokens)

    def metric_rows(self, new_tokens: int) -> list[MetricRow]:
        labels = {"precision": self.precision, "perturbation": self.perturbation}
        rows = [
            MetricRow("identical_fraction", self.identical_fraction, "", labels),
            MetricRow("bitwise_identical_fraction", self.bitwise_identical_fraction, "", labels),
        ]
        rows += [
            MetricRow("agreement_at_position", share, "", {**labels, "position": t})
            for t, share in enumerate(self.agreement(new_tokens))
        ]
        for index, prompt in enumerate(self.prompts):
            per_prompt = {**labels, "prompt": index}
            position = float("nan") if prompt.position is None else float(prompt.position)
            rows.append(MetricRow("first_divergence_position", position, "token", per_prompt))
            rows.append(MetricRow("max_logit_difference", prompt.max_logit_difference, "logit", per_prompt))
            rows.append(MetricRow("min_reference_margin", prompt.min_reference_margin, "logit", per_prompt))
            if prompt.position is not None:
                rows.append(MetricRow("logit_difference_at_divergence", prompt.logit_difference, "logit", per_prompt))
                rows.append(MetricRow("reference_margin_at_divergence", prompt.reference_margin, "logit", per_prompt))
        return rows


@dataclass
class SkippedRun:
    precision: str
    perturbation: str
    reason: str


@dataclass
class NondeterminismResult:
    """The comparisons of every (precision, perturbation) that ran, those skipped and why, and timings."""

    config: NondeterminismConfig
    device: str
    reference_threads: int
    comparisons: list[Comparison]
    skipped: list[SkippedRun]
    reference_seconds: dict[str, float]
    seconds: float

    def metric_rows(self) -> list[MetricRow]:
        """Every number as a tidy row (docs/nondeterminism.md lists names, units and labels)."""
        return [row for comparison in self.comparisons for row in comparison.metric_rows(self.config.new_tokens)]

    def timings(self) -> dict[str, float]:
        """Seconds of the whole study and of each decoding run, keyed `<precision>/<perturbation>`."""
        runs = {f"{precision}/reference": seconds for precision, seconds in self.reference_seconds.items()}
        runs |= {f"{c.precision}/{c.perturbation}": c.seconds for c in self.comparisons}
        return {"study_s": self.seconds, **runs}


def _check_inputs(model: nn.Module, prompts: Tensor, config: NondeterminismConfig) -> None:
    for method in ("prefill", "decode_step"):
        if not callable(getattr(model, method, None)):
            raise ConfigError(f"model: {type(model).__name__} has no {method}(); use a GPT or an HFCausalLM")
    if prompts.dim() != 2 or prompts.dtype != torch.int64:
        shape = tuple(prompts.shape)
        raise ConfigError(f"prompts: need int64 token ids (prompts, length), got {prompts.dtype} {shape}")
    context = getattr(model, "context_length", 0)
    if context and prompts.shape[1] + config.new_tokens > context:
        raise ConfigError(
            f"prompt_length + new_tokens = {prompts.shape[1] + config.new_tokens} exceeds the model's "
            f"context_length {context}"
        )
    if config.device == "cuda" and not torch.cuda.is_available():
        raise Unsupported("device=cuda: no CUDA device is available")


def run_study(model: nn.Module, prompts: Tensor, config: NondeterminismConfig) -> NondeterminismResult:
    """Decode `prompts` greedily at every precision under the reference order and each perturbation, and
    compare each perturbed run with its precision's reference prompt by prompt."""
    _check_inputs(model, prompts, config)
    reference = config.reference_order
    start = time.perf_counter()
    comparisons, skipped, reference_seconds = [], [], {}
    for precision in config.precisions:
        cast = cast_model(model, precision).to(config.device)
        baseline = greedy_decode(cast, prompts, config.new_tokens, reference, config.seed)
        reference_seconds[precision] = baseline.seconds
        for label, order in config.perturbation_orders:
            reason = order.skip_reason(config.device)
            if reason:
                skipped.append(SkippedRun(precision, label, reason))
                continue
            run = greedy_decode(cast, prompts, config.new_tokens, order, config.seed)
            divergences = [
                compare_prompt(baseline.tokens[i], baseline.logits[i], run.tokens[i], run.logits[i])
                for i in range(len(prompts))
            ]
            comparisons.append(Comparison(precision, label, divergences, run.seconds))
    with reduction_order(reference):
        threads = torch.get_num_threads()
    return NondeterminismResult(
        config, config.device, threads, comparisons, skipped, reference_seconds, time.perf_counter() - start
    )
