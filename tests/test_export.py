"""A trained GPT exported as a transformers GPT-2 directory reloads with the same logits."""

from __future__ import annotations

import pytest
import torch

from tradeoffs.models import GPT, ModelConfig
from tradeoffs.models.export import export_hf
from tradeoffs.quant import RotationConfig, RTNConfig, quantize_


def _gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    values = {"d_model": 32, "n_layer": 2, "n_head": 4, "n_kv_head": 4, "d_ff": 64, "context_length": 16}
    model = GPT(ModelConfig(**{**values, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("overrides", [{}, {"bias": True}, {"tie_embeddings": True}], ids=["plain", "bias", "tied"])
def test_export_round_trip_gives_the_same_logits(tmp_path, monkeypatch, overrides):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM

    model = _gpt(**overrides)
    quantize_(model, RTNConfig("W4A16"))  # weight-only quantized models export as their dequantized weights
    export_hf(model, tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=x).logits, model(x)[0], rtol=1e-5, atol=1e-5)
    assert (reloaded.lm_head.weight is reloaded.transformer.wte.weight) == bool(overrides.get("tie_embeddings"))


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (lambda: _gpt(norm="rmsnorm"), "norm=rmsnorm"),
        (lambda: _gpt(n_kv_head=2), "n_kv_head=2"),
        (lambda: _quantized(_gpt(), RotationConfig("W4A4")), "online rotations"),
    ],
)
def test_architectures_that_do_not_map_raise_a_clear_error(tmp_path, model, reason):
    with pytest.raises(ValueError, match=reason):
        export_hf(model(), tmp_path)


def _quantized(model, config):
    quantize_(model, config)
    return model
