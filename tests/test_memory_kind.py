"""The single-process memory studies: exact saved-tensor counts, fused against naive attention, per-block
recomputation, FP8 activation storage; the three kinds through the runner on tiny sizes, their report products
and claims on those runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from tradeoffs.bench.attention import (
    AttentionShape,
    differences,
    estimated_peak_bytes,
    fused_saved_bytes,
    loglog_slope,
    measure_case,
)
from tradeoffs.bench.saved import count_saved, in_fork
from tradeoffs.bench.timing import BenchConfig
from tradeoffs.errors import ConfigError, Unsupported
from tradeoffs.models.gpt import GPT, ModelConfig
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report import FIGURES, TABLES
from tradeoffs.report.claims import evaluate_claims, load_claims
from tradeoffs.results import collect
from tradeoffs.train.fp8_activations import dequantize_fp8, quantize_fp8, store_activations
from tradeoffs.train.recompute import hardware_flops_per_token, model_flops_per_token, recompute_blocks

FAST_BENCH = BenchConfig(warmup=0, warmup_time_s=0.0, min_runs=2, min_time_s=0.001, max_time_s=5.0)
TINY_GPT = ModelConfig(d_model=32, n_layer=2, n_head=4, n_kv_head=4, d_ff=64, context_length=32)


def _gpt_batch(config: ModelConfig, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(
        0, config.vocab_size, (batch, config.context_length + 1), generator=torch.Generator().manual_seed(0)
    )
    return tokens[:, :-1], tokens[:, 1:]


# ------------------------------------------------------------------------------------------ saved tensors
def test_a_linear_saves_exactly_its_input_and_views_count_once():
    linear = nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)  # the weight is saved too (for the input gradient)
    with count_saved(exclude=linear.parameters()) as saved:
        linear(x)
    assert saved.bytes == 5 * 8 * 4  # the fp32 input; the weight is excluded
    assert saved.excluded >= 1
    y = torch.randn(6, 8, requires_grad=True)
    with count_saved() as saved:
        (y * y.t().t()).sum()  # the same storage saved through two views
    assert saved.bytes == 6 * 8 * 4 and saved.tensors == 2


def test_in_fork_returns_the_childs_result_and_its_error():
    assert in_fork(lambda: torch.ones(3).sum().item()) == 3.0
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        in_fork(lambda: 1 / 0)


# --------------------------------------------------------------------------------------------- attention
def test_fused_attention_equals_math_and_explicit_attention():
    shape = AttentionShape(batch=1, heads=2, head_dim=8)
    found = differences(["flash", "math", "explicit"], shape, 64)
    assert set(found) == {"flash", "math", "explicit"}  # the CPU has a fused flash kernel
    for backend, tensors in found.items():
        for tensor, (absolute, relative) in tensors.items():
            assert relative < 1e-5, (backend, tensor, absolute)


def test_fused_saves_its_formula_and_naive_attention_grows_quadratically():
    shape = AttentionShape(batch=1, heads=1, head_dim=4)
    lengths = [64, 128, 256]
    flash = [measure_case("flash", shape, n, FAST_BENCH) for n in lengths]
    explicit = [measure_case("explicit", shape, n, FAST_BENCH) for n in lengths]
    assert [c.saved_bytes for c in flash] == [fused_saved_bytes(shape, n) for n in lengths]
    assert "Flash" in flash[0].kernel
    assert loglog_slope(lengths, [c.saved_bytes for c in flash])[0] == pytest.approx(1.0)
    assert loglog_slope(lengths, [c.saved_bytes for c in explicit])[0] > 1.8
    assert all(c.timing["median"] > 0 for c in flash + explicit)


def test_a_backend_the_machine_lacks_is_unsupported_not_an_error():
    if torch.cuda.is_available():
        pytest.skip("the efficient backend exists on CUDA")
    case = measure_case("efficient", AttentionShape(), 64, FAST_BENCH)
    assert not case.supported and "efficient" in case.reason


def test_a_length_the_memory_cannot_hold_is_refused_before_any_work():
    assert estimated_peak_bytes("math", AttentionShape(), 65536) > 16e9
    with pytest.raises(ConfigError, match=r"lengths: math attention at length 65536 .*memory_limit_gb"):
        load_experiment("attention_memory", ["lengths=[1024,4096,65536]", "backends=[math]"])
    with pytest.raises(ConfigError, match="backends: invalid value 'ring'"):
        load_experiment("attention_memory", ["backends=[flash,ring]"])


# --------------------------------------------------------------------------------------------- recompute
def test_checkpointing_cuts_saved_bytes_and_keeps_the_gradients():
    torch.manual_seed(0)
    model = GPT(TINY_GPT)
    inputs, targets = _gpt_batch(TINY_GPT)
    parameters = list(model.parameters())
    counts, gradients = {}, {}
    for recompute in (False, True):
        model.zero_grad()
        with recompute_blocks(model, recompute), count_saved(exclude=parameters) as saved:
            loss = model(inputs, targets)[1]
        with recompute_blocks(model, recompute):
            loss.backward()
        counts[recompute], gradients[recompute] = saved.bytes, [p.grad.clone() for p in parameters]
    assert counts[True] < 0.5 * counts[False]
    for plain, recomputed in zip(gradients[False], gradients[True], strict=True):
        torch.testing.assert_close(recomputed, plain, rtol=0, atol=1e-6)
    assert "forward" not in vars(model.blocks[0])  # the wrapper is gone after the block


def test_hardware_flops_add_one_forward_of_the_blocks():
    model_flops = model_flops_per_token(TINY_GPT)
    extra = hardware_flops_per_token(TINY_GPT, recompute=True) - model_flops
    assert hardware_flops_per_token(TINY_GPT, recompute=False) == model_flops
    lm_head = 2 * TINY_GPT.d_model * TINY_GPT.vocab_size
    assert extra == model_flops / 3 - lm_head  # one forward of everything but the output head


# ------------------------------------------------------------------------------------------ FP8 storage
def test_fp8_codes_are_real_float8_and_round_trip_within_e4m3_rounding():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 10
    for group in (0, 128):
        packed = quantize_fp8(x, group)
        assert packed.data.dtype == torch.float8_e4m3fn
        scales = 1 if group == 0 else math.ceil(1000 / group)
        assert packed.bytes == packed.data.numel() + 4 * scales
        back = dequantize_fp8(packed)
        assert back.shape == x.shape and back.dtype == x.dtype
        normal = x.abs() > packed.scales.max() * 2**-6  # E4M3 normals: relative error <= 2^-4
        assert ((back - x).abs()[normal] <= x.abs()[normal] * 2**-4 + 1e-12).all()


def test_fp8_storage_halves_activation_bytes_and_keeps_gradients_close():
    torch.manual_seed(0)
    model = GPT(TINY_GPT)
    inputs, targets = _gpt_batch(TINY_GPT)
    stores, gradients = {}, {}
    for storage in ("fp32", "bf16", "fp8"):
        model.zero_grad()
        with store_activations(model, storage) as store:
            loss = model(inputs, targets)[1]
        loss.backward()
        stores[storage], gradients[storage] = store, torch.cat([p.grad.flatten() for p in model.parameters()])
    ratio = stores["fp8"].activation_bytes / stores["bf16"].activation_bytes
    assert 0.5 < ratio < 0.52  # 1 byte against 2, plus one FP32 scale per tensor or group of 128
    assert stores["fp8"].bytes_by_role["other"] == stores["bf16"].bytes_by_role["other"]
    assert stores["fp8"].bytes_by_role["linear_input"] > 0
    error = (gradients["fp8"] - gradients["fp32"]).norm() / gradients["fp32"].norm()
    assert 0 < error < 0.1


def test_a_torch_without_float8_is_unsupported(monkeypatch):
    monkeypatch.delattr(torch, "float8_e4m3fn")
    with pytest.raises(Unsupported, match="float8_e4m3fn"):
        quantize_fp8(torch.ones(4))


@pytest.mark.parametrize(
    ("kind", "overrides", "message"),
    [
        ("fp8_activations", ["recipe=fp8"], "recipe: fp8_activations computes in FP32"),
        ("fp8_activations", ["storage=fp4"], "storage: invalid value 'fp4'"),
        ("recompute", ["batch_size=0"], "batch_size: must be > 0"),
        ("attention_memory", ["lengths=[128,256]"], "lengths: give at least 3 distinct"),
    ],
)
def test_bad_memory_configs_name_the_key(kind, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(kind, overrides)


# --------------------------------------------------------------------------------- kinds, report, claims
KIND_OVERRIDES = {
    "attention_memory": [
        "lengths=[64,128,256]",
        "n_head=1",
        "head_dim=4",
        "check_length=64",
        "backends=[flash,efficient,math,explicit]",
        "hardware.threads=1",
        "bench.warmup=0",
        "bench.min_runs=2",
        "bench.min_time_s=0.001",
    ],
    "recompute": [
        "model.d_model=32",
        "model.d_ff=64",
        "model.context_length=32",
        "batch_size=2",
        "hardware.threads=1",
        "bench.warmup=0",
        "bench.min_runs=2",
        "bench.min_time_s=0.001",
    ],
    "fp8_activations": [
        "model=gpt-60k",
        "model.n_layer=1",
        "model.context_length=32",
        "batch_size=4",
        "steps=4",
        "warmup_steps=1",
        "eval_windows=2",
        "hardware.threads=1",
    ],
}
FP8_ARMS = [("bf16", "fp32", 0), ("fp8", "fp32", 0), ("bf16", "fp32", 1), ("fp8", "fp32", 1), ("fp8", "fp8_states", 0)]


@pytest.fixture(scope="module")
def memory_table(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("memory")
    paths = []
    runs = [("attention_memory", "a", [])]
    runs += [("recompute", f"r{layers}", [f"model.n_layer={layers}"]) for layers in (1, 2)]
    runs += [
        ("fp8_activations", f"f{storage}{states}{seed}", [f"storage={storage}", f"recipe={states}", f"seed={seed}"])
        for storage, states, seed in FP8_ARMS
    ]
    for kind, name, extra in runs:
        config = load_experiment(kind, [*KIND_OVERRIDES[kind], *extra, f"study={kind}"])
        path = root / name / "result.json"
        run_experiment(f"{kind}/{name}", config, path)
        paths.append(path)
    return collect(paths)


def test_the_kinds_run_and_record_their_metrics(memory_table):
    assert set(memory_table["status"]) == {"ok"}, memory_table.groupby("id")["message"].first()
    metrics = set(memory_table["metric"])
    assert {"saved_bytes", "peak_bytes", "memory_slope", "max_rel_diff", "speedup_growth"} <= metrics
    assert {"time_ratio", "saved_ratio", "mfu", "hfu"} <= metrics
    assert {"activation_bytes", "training_bytes", "final_val_loss"} <= metrics
    slopes = memory_table[(memory_table["metric"] == "memory_slope") & (memory_table["label.measure"] == "saved")]
    by_backend = slopes.set_index("label.backend")["value"]
    assert by_backend["flash"] == pytest.approx(1.0) and by_backend["explicit"] > 1.8
    assert "efficient" not in by_backend  # unsupported on the CPU: its `supported` row says why
    saved = memory_table[memory_table["metric"] == "saved_ratio"]["value"]
    assert (saved < 0.6).all()


def test_the_report_products_draw(memory_table):
    for figure in ("memory_attention", "memory_recompute", "memory_fp8_activations"):
        assert FIGURES[figure].make(memory_table).axes
    assert len(TABLES["memory_attention"].make(memory_table)) == 4
    assert len(TABLES["memory_recompute"].make(memory_table)) == 2
    assert len(TABLES["memory_fp8_activations"].make(memory_table)) == len(FP8_ARMS)


def test_the_claims_decide_the_exact_parts(memory_table):
    claims = [c for c in load_claims() if c.id in ("attention-memory", "recompute", "fp8-activations")]
    decisions = {(v.claim, p.part): p.decision for v in evaluate_claims(memory_table, claims) for p in v.parts}
    exact = [
        ("attention-memory", "fused-linear-saved"),
        ("attention-memory", "naive-quadratic-saved"),
        ("attention-memory", "exact-fp32"),
        ("recompute", "activations-removed"),
        ("fp8-activations", "activations-halved"),
    ]
    for key in exact:
        assert decisions[key].verdict == "confirmed", (key, decisions[key].test)
    gpu_only = decisions[("attention-memory", "fa2-peak")]
    assert gpu_only.verdict == "inconclusive" and "cuda" in gpu_only.test
