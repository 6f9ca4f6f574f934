"""Evaluation of language models under named, pinned protocols, and the cost of a quantized model.

Protocols (`get_protocol`):
- `rolling`: lm-evaluation-harness's `loglikelihood_rolling` (its get_rolling_token_windows with
  context_len=1): the token stream cut into disjoint prediction windows of the context length; the first
  window is conditioned on a prefix token (BOS/EOT) alone, each later one on the tokens before it, and a
  short last window keeps a full context. Every token is scored exactly once.
- `sliding`: windows of the context length every `stride` tokens (Hugging Face's perplexity recipe): each
  window scores only the tokens the previous one did not, each with at least context - stride tokens of
  context; the first token of the stream is not scored.

A Score stores the summed log-likelihood and the token and byte counts, so perplexity, loss and bits per
byte can be recomputed from it. `compare` scores a model against a reference (KL divergence from the
reference per token, top-1 agreement, loss change) over the same windows. `bits_per_weight` and
`memory_footprint` read the quantized layers' storage costs (scales included). Calibration data never
overlaps evaluation data: `calibration_windows` draws from a named split and `check_disjoint` refuses
overlapping token ranges of the same source.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_choice, check_positive

PROTOCOL_KINDS = ("rolling", "sliding")


@dataclass(frozen=True)
class Protocol:
    """How a token stream is cut into scored windows (module docstring)."""

    name: str
    context_length: int
    stride: int = 0  # sliding only
    prefix_token: int = 0  # rolling only: the token the first window is conditioned on

    def __post_init__(self) -> None:
        check_choice("protocol.name", self.name, PROTOCOL_KINDS)
        check_positive("protocol.context_length", self.context_length)
        if self.name == "sliding" and not 0 < self.stride <= self.context_length:
            raise ConfigError(
                f"protocol.stride must be in [1, context_length={self.context_length}] for sliding windows, "
                f"got {self.stride}"
            )

    @property
    def label(self) -> str:
        if self.name == "sliding":
            return f"sliding-{self.context_length}-stride{self.stride}"
        return f"rolling-{self.context_length}-prefix{self.prefix_token}"


def get_protocol(name: str, context_length: int, *, stride: int | None = None, prefix_token: int = 0) -> Protocol:
    """A pinned protocol by name: `rolling` (lm-eval loglikelihood_rolling) or `sliding` (stride default
    context_length // 2)."""
    check_choice("protocol", name, PROTOCOL_KINDS)
    if name == "sliding":
        return Protocol(name, context_length, stride=stride or max(1, context_length // 2))
    return Protocol(name, context_length, prefix_token=prefix_token)


@dataclass(frozen=True)
class Window:
    """One model input: `length` positions starting at token `start` (preceded by the prefix token when
    `prefix`), scoring the predictions of positions [score_from, score_to)."""

    start: int
    length: int
    prefix: bool
    score_from: int
    score_to: int

    @property
    def first_target(self) -> int:
        """Stream index of the token predicted at position score_from."""
        return self.start - int(self.prefix) + self.score_from + 1


def windows(n_tokens: int, protocol: Protocol) -> list[Window]:
    """The protocol's windows over a stream of n_tokens tokens; every scored token appears once."""
    length = protocol.context_length
    if protocol.name == "rolling":
        if n_tokens < 1:
            return []
        first = min(length, n_tokens)
        result = [Window(0, first, True, 0, first)]
        predicted = first
        while predicted < n_tokens:
            count = min(n_tokens - predicted, length)
            end = predicted + count
            result.append(Window(end - length - 1, length, False, length - count, length))
            predicted = end
        return result
    result, previous_end = [], 0
    for begin in range(0, n_tokens - 1, protocol.stride):
        end = min(begin + length, n_tokens)
        first_target = max(begin + 1, previous_end)
        result.append(Window(begin, end - begin, False, first_target - begin - 1, end - begin - 1))
        previous_end = end
        if end == n_tokens:
            break
    return result


def _window_ids(tokens: np.ndarray, window: Window, prefix_token: int) -> Tensor:
    body = tokens[window.start : window.start + window.length - int(window.prefix)].astype(np.int64)
    ids = torch.from_numpy(body)
    return torch.cat([torch.tensor([prefix_token]), ids]) if window.prefix else ids


def _batches(tokens: np.ndarray, protocol: Protocol, batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(input ids (b, t), mask of scored positions (b, t), targets (b, t)) for windows of equal length."""
    by_length: dict[int, list[Window]] = {}
    for window in windows(len(tokens), protocol):
        by_length.setdefault(window.length, []).append(window)
    for length, group in by_length.items():
        for first in range(0, len(group), batch_size):
            chunk = group[first : first + batch_size]
            ids = torch.stack([_window_ids(tokens, w, protocol.prefix_token) for w in chunk])
            mask = torch.zeros(len(chunk), length, dtype=torch.bool)
            targets = torch.zeros(len(chunk), length, dtype=torch.long)
            for row, w in enumerate(chunk):
                mask[row, w.score_from : w.score_to] = True
                stream = np.arange(w.score_from, w.score_to) + w.first_target - w.score_from
                targets[row, w.score_from : w.score_to] = torch.from_numpy(tokens[stream].astype(np.int64))
            yield ids, mask, targets


@dataclass(frozen=True)
class Score:
    """Summed log-likelihood (nats) of the scored tokens, and how many tokens and corpus bytes they are."""

    protocol: str
    log_likelihood: float
    tokens: int
    bytes: int

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood per token (nats)."""
        return -self.log_likelihood / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def bits_per_byte(self) -> float:
        return -self.log_likelihood / math.log(2) / self.bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "loss": self.loss, "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte}


@dataclass(frozen=True)
class Comparison:
    """A model scored against a reference (usually full precision) over the same windows."""

    reference: Score
    model: Score
    kl_sum: float  # sum over scored tokens of KL(reference || model) in nats
    top1_agreements: int  # scored tokens where both models' argmax agree

    @property
    def kl(self) -> float:
        """Mean KL divergence from the reference per token (nats)."""
        return self.kl_sum / self.model.tokens

    @property
    def top1_agreement(self) -> float:
        return self.top1_agreements / self.model.tokens

    @property
    def loss_change(self) -> float:
        return self.model.loss - self.reference.loss

    def to_dict(self) -> dict:
        return {
            "reference": self.reference.to_dict(),
            "model": self.model.to_dict(),
            "kl_sum": self.kl_sum,
            "top1_agreements": self.top1_agreements,
            "kl": self.kl,
            "top1_agreement": self.top1_agreement,
            "loss_change": self.loss_change,
        }


def _logits(model: nn.Module, ids: Tensor) -> Tensor:
    out = model(ids)
    return (out[0] if isinstance(out, tuple) else out.logits).float()


def _byte_count(targets: Tensor, token_bytes: Sequence[int] | np.ndarray | None) -> int:
    if token_bytes is None:
        return int(targets.numel())
    return int(np.asarray(token_bytes)[targets.numpy()].sum())


def _stream(tokens: np.ndarray | Tensor, max_tokens: int | None) -> np.ndarray:
    array = tokens.numpy() if isinstance(tokens, Tensor) else np.asarray(tokens)
    return array[:max_tokens] if max_tokens is not None else array


@torch.no_grad()
def score(
    model: nn.Module,
    tokens: np.ndarray | Tensor,
    protocol: Protocol,
    *,
    batch_size: int = 8,
    max_tokens: int | None = None,
    token_bytes: Sequence[int] | np.ndarray | None = None,
) -> Score:
    """Score `model` on a token stream under `protocol` (the first `max_tokens` tokens when given).
    `token_bytes[id]` is each token's length in corpus bytes (None: one byte per token)."""
    return _run(model, None, _stream(tokens, max_tokens), protocol, batch_size, token_bytes).model


@torch.no_grad()
def compare(
    model: nn.Module,
    reference: nn.Module,
    tokens: np.ndarray | Tensor,
    protocol: Protocol,
    *,
    batch_size: int = 8,
    max_tokens: int | None = None,
    token_bytes: Sequence[int] | np.ndarray | None = None,
) -> Comparison:
    """Score `model` and `reference` on the same windows: both Scores, KL(reference || model) summed over
    the scored tokens, and how often their top-1 predictions agree."""
    return _run(model, reference, _stream(tokens, max_tokens), protocol, batch_size, token_bytes)


def _run(model, reference, tokens, protocol, batch_size, token_bytes) -> Comparison:
    device = next(model.parameters()).device
    totals = {"model": 0.0, "reference": 0.0, "kl": 0.0}
    count = agreements = n_bytes = 0
    for ids, mask, targets in _batches(tokens, protocol, batch_size):
        ids = ids.to(device)
        log_probs = F.log_softmax(_logits(model, ids), -1)[mask.to(device)].double()
        picked = targets[mask].to(device)
        totals["model"] += float(log_probs.gather(-1, picked[:, None]).sum())
        if reference is not None:
            ref_log_probs = F.log_softmax(_logits(reference, ids), -1)[mask.to(device)].double()
            totals["reference"] += float(ref_log_probs.gather(-1, picked[:, None]).sum())
            totals["kl"] += float((ref_log_probs.exp() * (ref_log_probs - log_probs)).sum())
            agreements += int((ref_log_probs.argmax(-1) == log_probs.argmax(-1)).sum())
        count += int(mask.sum())
        n_bytes += _byte_count(targets[mask], token_bytes)
    if not count:
        raise ValueError(f"protocol {protocol.label}: the token stream of {len(tokens)} tokens scores none")
    model_score = Score(protocol.label, totals["model"], count, n_bytes)
    reference_score = Score(protocol.label, totals["reference"], count, n_bytes) if reference is not None else None
    return Comparison(reference_score, model_score, totals["kl"], agreements)


def _storage_bits(module: nn.Module) -> float | None:
    bits = getattr(module, "bits_per_weight", None)
    return bits() if callable(bits) else None


def bits_per_weight(model: nn.Module) -> float:
    """Mean storage bits per weight over the quantized layers (scales and zero points included); ValueError
    if the model has none."""
    bits = total = 0.0
    for module in model.modules():
        per_weight = _storage_bits(module)
        if per_weight is not None:
            bits += per_weight * module.weight.numel()
            total += module.weight.numel()
    if not total:
        raise ValueError(f"{type(model).__name__} has no quantized layers")
    return bits / total


def memory_footprint(model: nn.Module, dense_bits: int = 16) -> int:
    """The model's weight storage in bytes: quantized layers' weights at their bits per weight (scales
    included), every other parameter and buffer at `dense_bits` (16: a 16-bit deployment; shared tensors
    counted once)."""
    counted: set[int] = set()
    bits = 0.0
    for module in model.modules():
        per_weight = _storage_bits(module)
        if per_weight is not None and id(module.weight) not in counted:
            counted.add(id(module.weight))
            bits += per_weight * module.weight.numel()
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in counted and tensor.is_floating_point():
            counted.add(id(tensor))
            bits += dense_bits * tensor.numel()
    return math.ceil(bits / 8)


@dataclass(frozen=True)
class TokenRange:
    """Tokens [start, stop) of a named source (a corpus split)."""

    source: str
    start: int
    stop: int


def check_disjoint(calibration: Sequence[TokenRange], evaluation: Sequence[TokenRange]) -> None:
    """Raise ConfigError if any calibration range overlaps an evaluation range of the same source."""
    for c in calibration:
        for e in evaluation:
            if c.source == e.source and c.start < e.stop and e.start < c.stop:
                raise ConfigError(
                    f"calibration: tokens [{c.start}, {c.stop}) of '{c.source}' overlap the evaluation tokens "
                    f"[{e.start}, {e.stop}); calibrate on another split (e.g. train) or other tokens"
                )


def calibration_windows(
    tokens: np.ndarray, samples: int, length: int, seed: int, source: str = "train"
) -> tuple[Tensor, list[TokenRange]]:
    """`samples` disjoint windows of `length` tokens at seeded random places of a split, as an int64
    (samples, length) tensor, and the token ranges they cover (for check_disjoint). ConfigError if the split
    holds fewer than samples x length tokens."""
    check_positive("calibration.samples", samples)
    check_positive("calibration.length", length)
    slots = len(tokens) // length
    if samples > slots:
        raise ConfigError(
            f"calibration: {samples} samples of {length} tokens need {samples * length} tokens; split "
            f"'{source}' has {len(tokens)} (at most {slots} samples of this length)"
        )
    generator = torch.Generator().manual_seed(seed)
    starts = sorted((torch.randperm(slots, generator=generator)[:samples] * length).tolist())
    batch = torch.from_numpy(np.stack([tokens[s : s + length] for s in starts]).astype(np.int64))
    return batch, [TokenRange(source, s, s + length) for s in starts]


def evaluation_range(source: str, n_tokens: int) -> list[TokenRange]:
    """The token range an evaluation of the first n_tokens tokens of a split reads."""
    return [TokenRange(source, 0, n_tokens)]
