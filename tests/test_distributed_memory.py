"""ZeRO's partitioning and 1-bit Adam on real gloo process groups (tradeoffs.train.zero, onebit_adam,
data_parallel): byte counts against the formula, sharded and uncompressed losses against DDP's, the packed signs
and the error feedback of the compression, the bytes counted per step, the distributed kind, its report
products and the two claims."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from tradeoffs.errors import ConfigError
from tradeoffs.models.gpt import ModelConfig
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.train.collectives import sent_bytes
from tradeoffs.train.data_parallel import DataParallelConfig, ideal_compressed_step_bytes, run_data_parallel
from tradeoffs.train.onebit_adam import compress, pack_signs, unpack_signs
from tradeoffs.train.zero import formula_bytes

TINY = ModelConfig(name="tiny", d_model=16, n_layer=2, n_head=2, n_kv_head=2, d_ff=32, context_length=16)


def _run(tmp_path: Path, **fields) -> object:
    config = DataParallelConfig(model=TINY, batch_size=4, eval_windows=2, launcher="fork", **fields)
    return run_data_parallel(config, tmp_path / f"{config.strategy}-{config.processes}-{config.seed}")


def _state_bytes(rank: dict) -> int:
    return rank["parameter_bytes"] + rank["gradient_bytes"] + rank["state_bytes"]


# ------------------------------------------------------------------------------------------------ formulas
def test_formula_reproduces_the_papers_figure_1():
    """Psi = 7.5B, mixed-precision Adam (2 + 2 + 12 bytes), N_d = 64: 120, 31.4, 16.6 and 1.9 GB per device."""
    gigabytes = {
        stage: formula_bytes(stage, 7_500_000_000, 64, param_bytes=2, grad_bytes=2, k=12).total / 1e9
        for stage in ("ddp", "zero1", "zero2", "zero3")
    }
    assert gigabytes["ddp"] == pytest.approx(120.0)
    assert gigabytes["zero1"] == pytest.approx(31.4, abs=0.05)
    assert gigabytes["zero2"] == pytest.approx(16.6, abs=0.05)
    assert gigabytes["zero3"] == pytest.approx(1.9, abs=0.05)


def test_bytes_sent_follow_the_ring_algorithms():
    assert sent_bytes("all_reduce", 1000, 4) == 1500  # 2 (N-1)/N
    assert sent_bytes("reduce_scatter", 1000, 4) == 750
    assert sent_bytes("all_gather", 250, 4) == 750
    assert sent_bytes("all_to_all", 1000, 4) == 750
    assert sent_bytes("all_reduce", 1000, 1) == 0


# -------------------------------------------------------------------------------------- 1-bit compression
def test_signs_are_packed_eight_to_a_byte():
    values = torch.tensor([1.0, -2.0, 0.0, -0.5, 3.0, 3.0, -1.0, -1.0] * 4)
    packed = pack_signs(values)
    assert packed.dtype == torch.uint8 and packed.numel() == values.numel() // 8
    assert packed[0].item() == 0b10101100  # + - + - + + - -  (zero counts as +)
    assert torch.equal(unpack_signs(packed), torch.where(values >= 0, 1.0, -1.0))
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_signs(torch.ones(12))


def test_error_feedback_keeps_what_compression_dropped():
    """c = values + error is exactly the decompressed part plus the new error; over repeated compression of the
    same vector the error stops growing, so the mean of what was sent converges to the vector (as 1/steps),
    where one compression without feedback is off by most of its norm."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(256, generator=generator) * torch.linspace(0.01, 3.0, 256)
    error, sent, norms = torch.zeros(256), torch.zeros(256), {}
    for step in range(1, 401):
        before = error.clone()
        packed, scale = compress(values, error)
        decompressed = scale * unpack_signs(packed)
        torch.testing.assert_close(decompressed + error, values + before, rtol=0, atol=1e-5)
        assert scale.item() == pytest.approx(((values + before).norm() / math.sqrt(256)).item(), rel=1e-6)
        sent += decompressed
        norms[step] = error.norm().item()
    assert norms[400] < 1.05 * norms[200]
    drift = ((sent / 400 - values).norm() / values.norm()).item()
    assert drift == pytest.approx(norms[400] / 400 / values.norm().item(), rel=1e-3)
    assert drift < 0.01
    packed, scale = compress(values, torch.zeros(256))
    assert ((scale * unpack_signs(packed) - values).norm() / values.norm()).item() > 0.5


# ----------------------------------------------------------------------------------- ZeRO on 2 processes
@pytest.fixture(scope="module")
def zero_runs(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("zero")
    return {s: _run(root, strategy=s, processes=2, steps=3) for s in ("ddp", "zero1", "zero2", "zero3")}


def test_model_state_bytes_match_the_formula_per_stage(zero_runs):
    psi = zero_runs["ddp"].parameters
    assert psi == _tiny_parameters()
    for stage, result in zero_runs.items():
        expected = formula_bytes(stage, psi, 2)
        ranks = result.ranks
        for key, value in (
            ("parameter_bytes", expected.parameters),
            ("gradient_bytes", expected.gradients),
            ("state_bytes", expected.optimizer_states),
        ):
            assert sum(r[key] for r in ranks) / len(ranks) == pytest.approx(value, rel=0.01), (stage, key)
        if stage in ("ddp", "zero2", "zero3"):  # even shards (padding not held): every process at the formula
            assert max(_state_bytes(r) for r in ranks) == pytest.approx(expected.total, rel=0.01), stage
        assert all(r["rss_peak_bytes"] and r["rss_peak_bytes"] > 0 for r in ranks)


def _tiny_parameters() -> int:
    from tradeoffs.models import build_model

    return sum(p.numel() for p in build_model(TINY).parameters())


def test_sharded_stages_train_like_ddp(zero_runs):
    reference = zero_runs["ddp"].train_loss
    for stage in ("zero1", "zero2", "zero3"):
        assert zero_runs[stage].train_loss == pytest.approx(reference, abs=1e-5), stage
        assert zero_runs[stage].val_loss == pytest.approx(zero_runs["ddp"].val_loss, abs=1e-5), stage
    assert reference[-1] < reference[0]


def test_zero2_counts_its_reduce_scatter_and_all_gather(zero_runs):
    """Per step and process: the padded gradients reduce-scattered at (N-1)/N and the padded shards all-gathered
    at (N-1), 4 bytes each, so 4 bytes x the padded parameter count (N = 2)."""
    from tradeoffs.models import build_model

    padded = sum(math.ceil(p.numel() / 2) * 2 for p in build_model(TINY).parameters())
    for per_process in zero_runs["zero2"].bytes_sent:
        assert per_process == [4 * padded / 2 + 4 * padded / 2] * 3


# ------------------------------------------------------------------------------ 1-bit Adam on 2 processes
def test_uncompressed_adam_trains_like_ddp_and_sends_an_fp32_all_reduce(tmp_path, zero_runs):
    adam = _run(tmp_path, strategy="adam", processes=2, steps=3)
    assert adam.train_loss == pytest.approx(zero_runs["ddp"].train_loss, abs=1e-5)
    padded = math.ceil(adam.parameters / 16) * 16
    assert adam.bytes_sent[0] == [2 * (2 - 1) / 2 * 4 * padded] * 3


def test_onebit_adam_sends_packed_signs_after_its_warm_up(tmp_path):
    result = _run(tmp_path, strategy="onebit_adam", processes=2, steps=8, warmup_fraction=0.25)
    sent = result.bytes_sent[0]
    padded = math.ceil(result.parameters / 16) * 16
    assert sent[:2] == [4 * padded] * 2  # 2 warm-up steps: the fp32 all-reduce
    assert sent[2:] == [ideal_compressed_step_bytes(result.parameters, 2)] * 6
    assert sent[0] / sent[-1] == pytest.approx(32, rel=0.01)
    assert all(math.isfinite(loss) for loss in result.train_loss)
    # worker error (Psi padded) and server error (half of it) beside Adam's two moments, parameters, gradients
    assert _state_bytes(result.ranks[0]) == 4 * result.parameters * 2 + 4 * padded * 2 + 4 * padded + 2 * padded


# -------------------------------------------------------------------------------------------- bad input
def test_bad_strategy_and_process_counts_fail_naming_the_key():
    with pytest.raises(ConfigError, match=r"strategy.*valid choices: ddp, zero1, zero2, zero3, adam, onebit_adam"):
        DataParallelConfig(strategy="zero4")
    with pytest.raises(ConfigError, match="processes=3 must divide batch_size=8"):
        DataParallelConfig(processes=3, batch_size=8)
    with pytest.raises(ConfigError, match="processes: must be > 0"):
        load_experiment("distributed", ["processes=0"])


def test_a_machine_without_the_gpus_gives_an_unsupported_row(tmp_path):
    from tradeoffs.pipeline.runner import run_experiment

    config = load_experiment("distributed", ["hardware=h100_sxm", "processes=2", "launcher=torchrun"])
    record = run_experiment("distributed/gpu", config, tmp_path / "gpu" / "result.json")
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs")
    assert record.status == "unsupported", record.message
    assert "CUDA" in record.message or "GPU" in record.message


def test_too_little_memory_for_the_processes_is_an_unsupported_row_before_any_starts(tmp_path, monkeypatch):
    from tradeoffs.kinds import distributed
    from tradeoffs.pipeline.runner import run_experiment

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 4000000 kB\nMemAvailable: 1024000 kB\n")  # 1000 MB: room for 2 processes
    monkeypatch.setattr(distributed, "_MEMINFO", meminfo)
    config = load_experiment("distributed", ["processes=4", "launcher=fork"])
    record = run_experiment("distributed/memory", config, tmp_path / "memory" / "result.json")
    assert record.status == "unsupported"
    assert "processes=4: 4 x 500 MB exceeds the 1000 MB of memory available" in record.message
    assert not (tmp_path / "memory" / "data_parallel_result.json").exists()


def test_a_failing_process_stops_the_others(tmp_path, monkeypatch):
    """Rank 1 fails at once; rank 0, waiting for it in DDP's first broadcast, is stopped, and the run raises."""
    import time

    import torch.distributed as dist

    from tradeoffs.train import data_parallel

    real = data_parallel.train_rank

    def failing(config):
        if dist.get_rank() == 1:
            raise RuntimeError("rank 1 fails")
        return real(config)

    monkeypatch.setattr(data_parallel, "train_rank", failing)
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"ddp on 2 processes \(fork\) failed: exit codes"):
        _run(tmp_path, strategy="ddp", processes=2, steps=2)
    assert time.perf_counter() - started < 120


# ------------------------------------------------------------- the kind, its report and claims (slow)
KIND_OVERRIDES = [
    "model.d_model=16",
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_kv_head=2",
    "model.d_ff=32",
    "model.context_length=16",
    "batch_size=4",
    "eval_windows=2",
    "launcher=fork",
]


@pytest.fixture(scope="module")
def distributed_table(tmp_path_factory) -> pd.DataFrame:
    """The zero_memory study (4 stages x 1, 2 processes) and comm_compression (Adam, 1-bit Adam x 2 seeds) at
    toy size, run through the runner and collected."""
    from tradeoffs.pipeline.runner import run_experiment
    from tradeoffs.results import collect

    root, paths = tmp_path_factory.mktemp("distributed"), []
    zero = load_experiment("distributed", [*KIND_OVERRIDES, "study=zero_memory", "steps=3"])
    for strategy, processes in itertools.product(("ddp", "zero1", "zero2", "zero3"), (1, 2)):
        name = f"zero_{strategy}_{processes}"
        paths.append(root / name / "result.json")
        run_experiment(f"distributed/{name}", replace(zero, strategy=strategy, processes=processes), paths[-1])
    comm = load_experiment("distributed", [*KIND_OVERRIDES, "study=comm_compression", "steps=20", "processes=2"])
    for strategy, seed in itertools.product(("adam", "onebit_adam"), (0, 1)):
        name = f"comm_{strategy}_{seed}"
        paths.append(root / name / "result.json")
        run_experiment(f"distributed/{name}", replace(comm, strategy=strategy, seed=seed), paths[-1])
    return collect(paths)


@pytest.mark.slow
def test_the_kind_records_bytes_beside_the_formula(distributed_table):
    table = distributed_table
    assert set(table["status"]) == {"ok"}, table.groupby("id")["message"].first()
    ratio = table[table["metric"] == "model_state_vs_formula"]
    zero = ratio[ratio["id"].str.startswith("distributed/zero")]
    assert zero["value"].tolist() == pytest.approx([1.0] * 8, rel=0.01)
    steps = table[(table["metric"] == "bytes_sent") & (table["id"] == "distributed/comm_onebit_adam_0")]
    assert len(steps) == 20


@pytest.mark.slow
def test_report_products_draw_from_the_runs(distributed_table, tmp_path):
    from tradeoffs.report import FIGURES, TABLES

    for name, figure in (
        ("zero", FIGURES["zero_memory"].make(distributed_table)),
        ("comm", FIGURES["comm_bytes"].make(distributed_table)),
    ):
        figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    table = TABLES["zero_memory"].make(distributed_table)
    assert len(table) == 8
    assert table["counted_vs_formula"].tolist() == pytest.approx([1.0] * 8, rel=0.01)
    assert table["loss_minus_ddp"].abs().max() < 1e-5


@pytest.mark.slow
def test_claims_are_decided_from_the_runs(distributed_table):
    from tradeoffs.report.claims import evaluate_claims, load_claims

    claims = [c for c in load_claims() if c.id in ("zero-memory", "comm-compression")]
    verdicts = {(v.claim, p.part): p.decision for v in evaluate_claims(distributed_table, claims) for p in v.parts}
    for part in ("model-state-bytes", "loss-stage1", "loss-stage2", "loss-stage3"):
        assert verdicts[("zero-memory", part)].verdict == "confirmed", verdicts[("zero-memory", part)]
    assert verdicts[("comm-compression", "compressed-step")].verdict == "confirmed"
    # 20 steps with 3 of warm-up: 1 / (0.15 + 0.85 / 32) = 5.66 > 5
    assert verdicts[("comm-compression", "end-to-end")].verdict == "confirmed"
    convergence = verdicts[("comm-compression", "convergence")]
    assert "paired by seed, 2 pairs" in convergence.test and len(convergence.run_ids) == 4


@pytest.mark.slow
def test_torchrun_and_forked_processes_give_the_same_run(tmp_path):
    """The launcher is descriptive: fresh torchrun interpreters and forked processes train identically."""
    config = DataParallelConfig(model=TINY, batch_size=4, eval_windows=2, strategy="zero2", processes=2, steps=2)
    launched = run_data_parallel(config, tmp_path / "torchrun")
    forked = run_data_parallel(replace(config, launcher="fork"), tmp_path / "fork")
    assert launched.train_loss == forked.train_loss
    assert launched.bytes_sent == forked.bytes_sent
    assert [_state_bytes(r) for r in launched.ranks] == [_state_bytes(r) for r in forked.ranks]


@pytest.mark.timeout(300)  # the failure this guards against is a hang
def test_forked_processes_join_from_a_relative_output_directory(tmp_path, monkeypatch):
    """Snakemake's jobs give relative paths (results/distributed/<id>): the processes still meet (the store's
    file:// URL is made absolute; a relative one left them waiting for a file they could not create)."""
    monkeypatch.chdir(tmp_path)
    config = DataParallelConfig(model=TINY, batch_size=4, eval_windows=2, launcher="fork", processes=2, steps=2)
    result = run_data_parallel(config, Path("results") / "distributed" / "relative")
    assert len(result.train_loss) == 2
