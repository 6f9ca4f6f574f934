"""Evaluation protocols, scores, comparisons, storage costs and the calibration/evaluation overlap check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tradeoffs.errors import ConfigError
from tradeoffs.evaluate import (
    TokenRange,
    bits_per_weight,
    calibration_windows,
    check_disjoint,
    compare,
    evaluation_range,
    get_protocol,
    memory_footprint,
    score,
    windows,
)
from tradeoffs.models import GPT, ModelConfig
from tradeoffs.quant import RTNConfig, quantize_


def _scored(n_tokens, protocol) -> list[int]:
    result = []
    for w in windows(n_tokens, protocol):
        result += list(range(w.first_target, w.first_target + w.score_to - w.score_from))
        assert w.length <= protocol.context_length
    return result


@pytest.mark.parametrize("n_tokens", [1, 7, 8, 9, 33])
def test_every_token_is_scored_once(n_tokens):
    assert _scored(n_tokens, get_protocol("rolling", 8)) == list(range(n_tokens))
    assert _scored(n_tokens, get_protocol("sliding", 8, stride=3)) == list(range(1, n_tokens))


def test_rolling_windows_are_lm_eval_loglikelihood_rolling():
    """The first window predicts tokens 0..L-1 from [prefix] + tokens[:L-1]; later windows the next L
    tokens from the L tokens before them; the short last window keeps a full context."""
    assert [(w.start, w.length, w.prefix, w.score_from) for w in windows(20, get_protocol("rolling", 8))] == [
        (0, 8, True, 0),
        (7, 8, False, 0),
        (11, 8, False, 4),
    ]


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(d_model=32, n_layer=2, n_head=4, n_kv_head=4, d_ff=64, context_length=16)).eval()


def test_score_sums_the_log_likelihood_of_each_token_given_its_window():
    model = _model()
    tokens = np.random.default_rng(0).integers(0, 256, 40).astype(np.uint16)
    protocol = get_protocol("rolling", 16, prefix_token=10)
    result = score(model, tokens, protocol, batch_size=2)
    expected = 0.0
    with torch.no_grad():
        for w in windows(len(tokens), protocol):
            body = torch.from_numpy(tokens[w.start : w.start + w.length - int(w.prefix)].astype(np.int64))
            ids = torch.cat([torch.tensor([10]), body]) if w.prefix else body
            log_probs = F.log_softmax(model(ids[None])[0][0], -1)
            for p in range(w.score_from, w.score_to):
                expected += float(log_probs[p, int(tokens[w.first_target + p - w.score_from])])
    assert result.tokens == 40 and result.bytes == 40
    assert result.log_likelihood == pytest.approx(expected, rel=1e-6)
    assert result.perplexity == pytest.approx(math.exp(-expected / 40))
    assert result.bits_per_byte == pytest.approx(-expected / 40 / math.log(2))
    byte_lengths = np.full(256, 2)
    assert score(model, tokens, protocol, token_bytes=byte_lengths).bytes == 80


def test_compare_with_itself_and_with_a_quantized_copy():
    model, tokens = _model(), np.arange(50) % 256
    protocol = get_protocol("sliding", 16, stride=8)
    same = compare(model, model, tokens, protocol)
    assert same.kl == pytest.approx(0.0, abs=1e-9) and same.top1_agreement == 1.0 and same.loss_change == 0.0
    quantized = _model()
    quantize_(quantized, RTNConfig("W3A16"))
    result = compare(quantized, model, tokens, protocol)
    assert result.kl > 0 and result.reference.log_likelihood == same.model.log_likelihood
    assert result.to_dict()["model"]["tokens"] == 49


def test_bits_per_weight_and_memory_footprint_count_scales():
    model = _model()
    dense = memory_footprint(model, dense_bits=16)
    assert dense == sum(p.numel() for p in model.parameters()) * 2
    with pytest.raises(ValueError):
        bits_per_weight(model)
    quantize_(model, RTNConfig("W4A16"))  # INT4 asymmetric per row: FP32 scale + 4-bit zero point per row
    expected = {32: 4 + 36 / 32, 64: 4 + 36 / 64}
    sizes = [(m.in_features, m.weight.numel()) for m in model.blocks.modules() if hasattr(m, "in_features")]
    mean = sum(expected[i] * n for i, n in sizes) / sum(n for _, n in sizes)
    assert bits_per_weight(model) == pytest.approx(mean)
    saved = sum(n for _, n in sizes) * (16 - mean) / 8
    assert memory_footprint(model) == pytest.approx(dense - saved, abs=1)


def test_calibration_never_overlaps_evaluation():
    split = np.arange(1000)
    batch, ranges = calibration_windows(split, 10, 64, seed=0)
    assert batch.shape == (10, 64) and batch.dtype == torch.long
    assert all(torch.equal(batch[i], torch.arange(r.start, r.stop)) for i, r in enumerate(ranges))
    check_disjoint(ranges, evaluation_range("validation", 500))
    with pytest.raises(ConfigError, match="overlap"):
        check_disjoint(ranges, evaluation_range("train", 1000))
    check_disjoint([TokenRange("train", 0, 10)], [TokenRange("train", 10, 20)])
    with pytest.raises(ConfigError, match="calibration: 16 samples of 64 tokens need 1024 tokens"):
        calibration_windows(split, 16, 64, seed=0)
    with pytest.raises(ConfigError, match="protocol"):
        get_protocol("strided", 16)
