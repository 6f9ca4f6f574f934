"""A trained GPT exported as a transformers GPT-2 directory reloads with the same logits; a model whose
function its weights cannot carry is refused, naming the module; the directory is written atomically and never
over a user's files; `python -m tradeoffs export` reaches it from a train run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import TRAIN_TINY
from tradeoffs.models import GPT, ModelConfig
from tradeoffs.models.export import export_hf
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.quant import (
    GPTQConfig,
    LLMInt8Config,
    RotationConfig,
    RTNConfig,
    SearchConfig,
    SmoothQuantConfig,
    quantize_,
)
from tradeoffs.train.checkpoint import model_from_checkpoint


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
        (lambda: _quantized(_gpt(), RotationConfig("W4A4")), "differs from its weights' product"),
    ],
)
def test_architectures_that_do_not_map_raise_a_clear_error(tmp_path, model, reason):
    with pytest.raises(ValueError, match=reason):
        export_hf(model(), tmp_path)


def _quantized(model, config):
    quantize_(model, config)
    return model


def _calibration() -> torch.Tensor:
    return torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))


def _same_logits(model, directory) -> None:
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).eval()
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=x).logits, model(x)[0], rtol=1e-5, atol=1e-5)


# Each PTQ method's output: exported with the same logits, or refused naming the module and what it computes.
PTQ_OUTPUTS = {
    "rtn-W4A16": (lambda: RTNConfig("W4A16"), None),
    "rtn-W8A8": (lambda: RTNConfig("W8A8"), "blocks.0.attn.qkv (QuantizedLinear): its output differs"),
    "rtn-W4A16-kv-int8": (lambda: RTNConfig(_spec("W4A16", kv_cache="int8")), "forward hooks"),
    "gptq-W4A16": (lambda: GPTQConfig("W4A16"), None),
    "smoothquant-W8A8": (lambda: SmoothQuantConfig("W8A8"), "QuantizedLinear): its output differs"),
    "rotation-W4A4": (lambda: RotationConfig("W4A4"), "QuantizedLinear): its output differs"),
    "llm_int8": (lambda: LLMInt8Config(), "(LLMInt8Linear): its output differs"),
    "search-W4A16": (lambda: SearchConfig("W4A16"), None),
}


def _spec(name, **overrides):
    from tradeoffs.quant.spec import get_spec

    return get_spec(name, **overrides)


@pytest.mark.parametrize("method", PTQ_OUTPUTS)
def test_every_ptq_methods_output_exports_faithfully_or_is_refused(tmp_path, monkeypatch, method):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config, refusal = PTQ_OUTPUTS[method]
    model = _gpt()
    quantize_(model, config(), _calibration())
    target = tmp_path / "export"
    if refusal is None:
        export_hf(model, target)
        _same_logits(model, target)
    else:
        with pytest.raises(ValueError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
            export_hf(model, target)
        assert not target.exists() and [p.name for p in tmp_path.iterdir()] == []  # nothing left behind


def test_a_non_empty_directory_is_kept_unless_overwrite_and_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = tmp_path / "model"
    target.mkdir()
    (target / "notes.txt").write_text("the user's own file")
    with pytest.raises(ValueError, match=r"is not empty .*notes\.txt.*overwrite"):
        export_hf(_gpt(), target)
    assert (target / "notes.txt").read_text() == "the user's own file"
    export_hf(_gpt(), target, overwrite=True)
    assert not (target / "notes.txt").exists() and (target / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the staging and set-aside folders are gone
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        export_hf(_gpt(), tmp_path / "file")


def test_the_export_command_writes_a_train_runs_model(workflow_dir):
    train = load_experiment("train", [*TRAIN_TINY, "steps=4", "eval_interval=4"])
    result = workflow_dir / "results/train/tiny-00000000/result.json"
    assert run_experiment("train/tiny-00000000", train, result, job_threads=1).status == "ok"
    command = [sys.executable, "-m", "tradeoffs", "export"]
    done = subprocess.run([*command, str(result), "hf"], cwd=workflow_dir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _same_logits(model_from_checkpoint(result.parent / "checkpoint.pt"), workflow_dir / "hf")
    again = subprocess.run([*command, str(result), "hf"], cwd=workflow_dir, capture_output=True, text=True)
    assert again.returncode != 0 and "is not empty" in again.stderr and "--overwrite" in again.stderr
    again = subprocess.run(
        [*command, str(result), "hf", "--overwrite"], cwd=workflow_dir, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    missing = subprocess.run([*command, "nowhere.json", "x"], cwd=workflow_dir, capture_output=True, text=True)
    assert missing.returncode != 0 and "is not a file" in missing.stderr and "Traceback" not in missing.stderr
