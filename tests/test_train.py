"""Training: emulated quantized Linears (forward and STE backward), recipes, the loop's determinism,
bit-identical resume, divergence as a result, optimizer-state quantization, the schedule."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TRAIN_TINY as TINY
from tradeoffs.data import Dataset
from tradeoffs.errors import ConfigError, Diverged
from tradeoffs.formats import fake_quant, get_format
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.train import (
    LinearQuantizer,
    QuantLinear,
    apply_recipe,
    lr_factor,
    quantize_state,
    state_bytes_per_parameter,
    train,
)


def tiny_config(*overrides: str):
    return load_experiment("train", [*TINY, *overrides])


def compose_train(overrides: list[str]):
    return load_experiment("train", overrides)


@pytest.fixture(scope="module")
def corpus() -> Dataset:
    """A small byte corpus in memory (the loop's logic does not depend on which corpus)."""
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog. " * 400, dtype=np.uint8).astype(np.uint16)
    splits = {"train": text[:16000], "validation": text[16000:17000], "test": text[17000:]}
    meta = {"source_sha256": "0" * 64, "splits": {k: {"bytes": len(v), "tokens": len(v)} for k, v in splits.items()}}
    return Dataset("fox", splits, 256, meta, Path("."))


def _linear(recipe: str, in_features: int = 64, out_features: int = 32) -> tuple[nn.Linear, QuantLinear]:
    torch.manual_seed(0)
    plain = nn.Linear(in_features, out_features, bias=True)
    model = nn.Sequential(nn.Linear(in_features, out_features, bias=True))
    model[0].load_state_dict(plain.state_dict())
    apply_recipe(model, tiny_config(f"recipe={recipe}").recipe)
    return plain, model[0]


def _quantized_copy(plain: nn.Linear, quantizer: LinearQuantizer) -> QuantLinear:
    module = nn.Linear(plain.in_features, plain.out_features, bias=plain.bias is not None)
    module.load_state_dict(plain.state_dict())
    module.__class__ = QuantLinear
    module.quantizer = quantizer
    return module


def test_full_precision_recipes_leave_the_model_untouched():
    _, linear = _linear("fp32")
    assert type(linear) is nn.Linear


def test_rotations_alone_cancel_in_every_gemm():
    """Forward Hadamard (Quartet) and wgrad random Hadamard (NVFP4) with FP32 formats give nn.Linear's
    output and gradients: only the quantization between them changes anything."""
    torch.manual_seed(0)
    plain = nn.Linear(64, 32)
    fp32 = get_format("fp32")
    rotated = _quantized_copy(
        plain, LinearQuantizer(fp32, fp32, fp32, hadamard_size=32, wgrad_hadamard_size=16, step=3)
    )
    x, grad_out = torch.randn(64, 64, requires_grad=True), torch.randn(64, 32)
    x_ref = x.detach().clone().requires_grad_()
    torch.testing.assert_close(rotated(x), plain(x_ref), rtol=1e-5, atol=1e-5)
    rotated(x).backward(grad_out)
    plain(x_ref).backward(grad_out)
    torch.testing.assert_close(rotated.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_forward_and_ste_backward_quantize_each_gemm_along_its_contraction_axis():
    plain, quantized = _linear("mxfp8")
    assert isinstance(quantized, QuantLinear)
    x = torch.randn(64, 64, requires_grad=True)
    grad_out = torch.randn(64, 32)
    quantized(x).backward(grad_out)
    w4 = w5 = get_format("mxfp8_e4m3")  # the mxfp8 recipe uses E4M3 for all three roles
    expected_y = fake_quant(x.detach(), w4) @ fake_quant(plain.weight.detach(), w4).T + plain.bias
    torch.testing.assert_close(quantized(x.detach()), expected_y)
    expected_dx = fake_quant(grad_out, w5) @ fake_quant(plain.weight.detach(), w4, axis=0)
    expected_dw = fake_quant(grad_out, w5, axis=0).T @ fake_quant(x.detach(), w4, axis=0)
    torch.testing.assert_close(x.grad, expected_dx)
    torch.testing.assert_close(quantized.weight.grad, expected_dw)
    torch.testing.assert_close(quantized.bias.grad, grad_out.sum(0))


def test_recipes_keep_the_head_and_last_blocks_in_high_precision():
    config = tiny_config("recipe=nvfp4", "model.n_layer=3")
    from tradeoffs.models import build_model

    model = build_model(config.model)
    apply_recipe(model, config.recipe)
    kinds = {name: type(m).__name__ for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert kinds["lm_head"] == "Linear"
    assert all(kind == "Linear" for name, kind in kinds.items() if name.startswith("blocks.2."))
    assert all(kind == "QuantLinear" for name, kind in kinds.items() if name.startswith(("blocks.0.", "blocks.1.")))


def test_a_recipe_whose_blocks_do_not_fit_the_model_fails_before_training():
    with pytest.raises(ConfigError, match=r"block_size=32 does not divide model.d_model=24"):
        load_experiment("train", ["model=gpt-20k", "recipe=mxfp8"])


def test_training_learns_and_is_bit_identical(corpus):
    config = tiny_config("steps=30", "eval_interval=15", "lr=0.01")
    model_a, result_a = train(config, dataset=corpus)
    model_b, result_b = train(config, dataset=corpus)
    assert result_a.val_loss[-1][1] < result_a.val_loss[0][1] < math.log(256)
    assert result_a.train_loss == result_b.train_loss
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert result_a.tokens == 30 * 4 * 32 and result_a.tokens_per_s > 0


@pytest.mark.parametrize("recipe", ["fp32", "nvfp4", "fp8_states", "qat_int4"])
def test_resume_reaches_exactly_the_uninterrupted_weights(corpus, tmp_path, recipe):
    config = tiny_config(f"recipe={recipe}", "steps=12", "eval_interval=6", "checkpoint_interval=3")
    whole, whole_result = train(config, dataset=corpus)
    checkpoint = tmp_path / "checkpoint.pt"
    _, partial = train(config, checkpoint, stop_after=7, dataset=corpus)
    assert partial.steps == 7 and not partial.finished and checkpoint.is_file()
    resumed, resumed_result = train(config, checkpoint, dataset=corpus)
    assert resumed_result.finished and resumed_result.train_loss == whole_result.train_loss
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_a_checkpoint_of_another_config_is_refused(corpus, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    train(tiny_config("steps=2", "eval_interval=2"), checkpoint, dataset=corpus)
    with pytest.raises(ConfigError, match="belongs to another config"):
        train(tiny_config("steps=3", "eval_interval=3"), checkpoint, dataset=corpus)


def test_divergence_ends_the_run_with_its_step(corpus):
    with pytest.raises(Diverged) as caught:
        train(tiny_config("steps=40", "lr=50", "warmup_steps=0", "grad_clip=0"), dataset=corpus)
    assert 0 < caught.value.step < 40
    assert caught.value.result.train_loss[-1][0] == caught.value.step


def test_a_diverged_run_is_a_result_with_its_curve(workflow_dir):
    config = load_experiment("train", [*TINY, "steps=40", "lr=50", "warmup_steps=0", "grad_clip=0"])
    record = run_experiment("train/diverge-test", config, workflow_dir / "results/train/d/result.json")
    assert record.status == "diverged" and "step" in record.message
    assert any(m.name == "train_loss" for m in record.metrics)


def _forwards_quantized(config, corpus) -> tuple[list[bool], object]:
    """Per model forward of a run (training steps, then evaluations), whether its QuantLinears quantized."""
    seen = []
    original = QuantLinear.forward

    def spy(self, x):
        seen.append(self.quantizer.enabled)
        return original(self, x)

    QuantLinear.forward = spy
    try:
        model, result = train(config, dataset=corpus)
    finally:
        QuantLinear.forward = original
    per_forward = sum(isinstance(m, QuantLinear) for m in model.modules())
    return [all(seen[i : i + per_forward]) for i in range(0, len(seen), per_forward)], result


def test_quantization_starts_at_the_qat_fraction(corpus):
    config = tiny_config("recipe=qat_int4", "steps=8", "eval_interval=8")  # eval_windows = batch: one forward
    forwards, result = _forwards_quantized(config, corpus)
    # 8 training steps, quantized from step 4 on; then the final weights without and with quantization
    assert forwards == [False] * 4 + [True] * 4 + [False, True]
    assert result.final_quantized and math.isfinite(result.final_unquantized_loss)


def _ptq_reference(model: nn.Module, config, corpus) -> float:
    """The validation loss of a plain copy of a trained model whose recipe's Linears' weights are replaced, by
    hand, by their round-to-nearest fake quantization."""
    from tradeoffs.models import build_model
    from tradeoffs.train import evaluate

    plain = build_model(config.model)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, QuantLinear):
                weight = plain.get_submodule(name).weight
                weight.copy_(fake_quant(weight, config.recipe.weight_format, axis=-1))
    return evaluate(plain, corpus, config, "cpu")


def test_a_start_fraction_of_one_trains_in_full_precision_and_quantizes_the_final_model(corpus):
    """quant_start_fraction = 1 is post-training quantization: training is the FP32 run's, bit for bit, and the
    final loss is that of the final weights rounded to the recipe's format, as a hand-quantized copy gives."""
    ptq = tiny_config("recipe=qat_int4", "recipe.quant_start_fraction=1.0", "steps=8", "eval_interval=4")
    forwards, result = _forwards_quantized(ptq, corpus)
    assert forwards == [False] * 8 + [False] + [False, True]  # the step-4 evaluation is full precision
    fp32_model, fp32_result = train(tiny_config("steps=8", "eval_interval=4"), dataset=corpus)
    model, _ = train(ptq, dataset=corpus)
    for a, b in zip(model.state_dict().values(), fp32_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert result.train_loss == fp32_result.train_loss and not fp32_result.final_quantized
    assert result.final_quantized and result.val_loss[0] == fp32_result.val_loss[0]
    assert result.final_unquantized_loss == pytest.approx(fp32_result.val_loss[-1][1], rel=1e-6)
    assert result.val_loss[-1][1] == pytest.approx(_ptq_reference(model, ptq, corpus), rel=1e-5)
    assert result.val_loss[-1][1] != pytest.approx(result.final_unquantized_loss, rel=1e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["recipe=qat_int4", "recipe.quant_start_fraction=1.5"], r"recipe.quant_start_fraction must be in \[0, 1\]"),
        (["recipe.quant_start_fraction=0.5"], r"quant_start_fraction=0.5 needs a quantized .* 'fp32' quantizes no"),
    ],
)
def test_a_qat_start_outside_its_range_or_without_formats_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(*overrides)


def test_range_expansion_lowers_fp8_state_error():
    """COAT: second moments spanning many decades quantize far better after dynamic range expansion."""
    generator = torch.Generator().manual_seed(0)
    state = torch.exp(torch.randn(64 * 128, generator=generator) * 3) * 1e-6
    spec = get_format("fp8_e4m3_g128")
    plain = ((quantize_state(state, spec, False) - state) / state).abs().mean()
    expanded = ((quantize_state(state, spec, True) - state) / state).abs().mean()
    assert expanded < 0.5 * plain
    assert state_bytes_per_parameter(tiny_config("recipe=fp8_states").recipe) == pytest.approx(
        2 * (1 + 4 / 128) + 8 / 128
    )
    assert state_bytes_per_parameter(tiny_config().recipe) == 8.0


def test_schedule_warms_up_then_decays_to_the_floor():
    config = tiny_config("steps=100", "warmup_steps=10", "min_lr_fraction=0.1")
    assert lr_factor(0, config) == pytest.approx(0.1)
    assert lr_factor(9, config) == pytest.approx(1.0)
    assert lr_factor(10, config) == pytest.approx(1.0)
    assert lr_factor(99, config) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_factor(s, config) >= lr_factor(s + 1, config) for s in range(10, 99))


def test_training_benchmark_prints_its_ratios(capsys):
    from tradeoffs.train.loop_speed import main

    main(
        compose_train,
        [
            "--model",
            "gpt-tiny",
            "--context",
            "32",
            "--batch",
            "4",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--rounds",
            "1",
            "--recipes",
            "fp32",
            "fp8",
            "--eager",  # the compiled quantizers compile per shape: tens of seconds on a cold machine
        ],
    )
    out = capsys.readouterr().out
    assert "fp32: project loop" in out and "ratio" in out
    assert "fp8:" in out and "x fp32 (target <= 2.0" in out


def test_an_emulated_recipe_runs_under_bf16_autocast(corpus):
    """Quantized Linears compute in FP32 inside autocast; their gradients come back in the inputs' dtypes."""
    _, result = train(tiny_config("recipe=mxfp8", "recipe.compute_dtype=bf16", "steps=3", "eval_interval=3"),
                      dataset=corpus)  # fmt: skip
    assert result.finished and math.isfinite(result.val_loss[-1][1])


def test_range_expansion_keeps_tiny_narrow_groups():
    """Second moments of ~1e-8 spanning 2x: the expansion works on |x| / max|x|, so nothing underflows."""
    state = 1e-8 * (1 + torch.rand(4 * 128, generator=torch.Generator().manual_seed(1)))
    restored = quantize_state(state, get_format("fp8_e4m3_g128"), True)
    assert ((restored - state) / state).abs().max() < 0.1


def _interrupted_checkpoint(corpus, path: Path):
    """A checkpoint of a run stopped at step 2 of 4, and its config."""
    config = tiny_config("steps=4", "eval_interval=2", "checkpoint_interval=2")
    train(config, path, stop_after=2, dataset=corpus)
    return config


def test_a_checkpoint_with_a_flipped_byte_stops_the_run_naming_it(corpus, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    config = _interrupted_checkpoint(corpus, checkpoint)
    damaged = bytearray(checkpoint.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    checkpoint.write_bytes(damaged)
    with pytest.raises(Exception, match="sha256") as caught:
        train(config, checkpoint, dataset=corpus)
    assert str(checkpoint) in str(caught.value)
    assert checkpoint.read_bytes() == damaged  # kept for inspection, not overwritten


def test_a_truncated_checkpoint_stops_the_run_naming_it(corpus, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    config = _interrupted_checkpoint(corpus, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 3])
    with pytest.raises(Exception) as caught:
        train(config, checkpoint, dataset=corpus)
    assert str(checkpoint) in str(caught.value)


def test_a_rerun_over_a_finished_checkpoint_trains_again(workflow_dir):
    """A forced rerun (result.json gone, the finished checkpoint still there) measures a new run: its step
    times are its own, its losses the same (deterministic)."""
    config = tiny_config("steps=4", "eval_interval=4")
    out = workflow_dir / "results/train/rerun/result.json"
    first = run_experiment("train/rerun", config, out)
    second = run_experiment("train/rerun", config, out)
    assert first.status == second.status == "ok"
    assert second.timings["train_s"] != first.timings["train_s"]
    losses = [[m.value for m in record.metrics if m.name == "final_val_loss"] for record in (first, second)]
    assert losses[0] == losses[1]


def _small_state() -> dict:
    torch.manual_seed(0)
    shared = torch.randn(4, 3)
    return {
        "model": {"wte.weight": shared, "lm_head.weight": shared, "norm": torch.ones(3, dtype=torch.bfloat16)},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.95)}]},
        "rng": torch.get_rng_state()[:16],
        "curve": [(0, 1.5), (2, float("nan"))],
        "best": math.inf,
        "$odd": None,
    }


def test_a_checkpoint_round_trips_its_state_exactly(tmp_path):
    from tradeoffs.train.checkpoint import load_checkpoint, save_checkpoint

    state = _small_state()
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.keys() == state.keys() and loaded["best"] == math.inf and loaded["$odd"] is None
    assert loaded["curve"][0] == (0, 1.5) and math.isnan(loaded["curve"][1][1])
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert torch.equal(loaded["optimizer"]["state"][0]["step"], torch.tensor(3.0))  # integer key kept
    for name in ("wte.weight", "lm_head.weight", "norm"):
        assert torch.equal(loaded["model"][name], state["model"][name]), name
    assert loaded["model"]["norm"].dtype == torch.bfloat16 and torch.equal(loaded["rng"], state["rng"])


def test_every_flipped_byte_of_a_checkpoint_is_refused(tmp_path):
    """Header, metadata or tensor bytes: any single flipped byte is a CheckpointError naming the file."""
    from tradeoffs.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.arange(6.0), "rng": torch.arange(4, dtype=torch.uint8), "curve": [(0, 1.5)]})
    original = path.read_bytes()
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x10
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load_checkpoint(path)
