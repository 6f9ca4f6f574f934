"""Quantization error of FP8 Adam states on moments recorded from a real training run: the library function on a
trained checkpoint, and the optimizer_states kind through the runner with the train result as its planned
input, whose rows the optimizer-fp8 claim decides."""

from __future__ import annotations

import math

import pytest

from conftest import TRAIN_TINY, copy_workflow
from tradeoffs.formats import get_format
from tradeoffs.numerics import quantization_error
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report.claims import decide_part, load_claims
from tradeoffs.report.claims.verdicts import CONFIRMED, REFUTED
from tradeoffs.results import collect
from tradeoffs.train.checkpoint import load_checkpoint
from tradeoffs.train.optim import quantize_state
from tradeoffs.train.state_error import checkpoint_state_error

SOURCE = "train/tiny-00000000"
pytestmark = pytest.mark.slow  # trains a model (about 12 s on a loaded 2-core machine)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workflow root, the train result path, the records of the kind without and with range expansion)."""
    root = copy_workflow(tmp_path_factory.mktemp("states"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("TRADEOFFS_ROOT", raising=False)
        train = load_experiment("train", [*TRAIN_TINY, "study=train", "steps=4", "eval_interval=4"])
        source = root / f"results/{SOURCE}/result.json"
        assert run_experiment(SOURCE, train, source, job_threads=1).status == "ok"
        records = []
        for index, expand in enumerate((False, True)):
            config = load_experiment(
                "optimizer_states",
                ["study=optimizer_states", f"state_range_expansion={expand}", f"source_id={SOURCE}"],
            )
            config.source = train
            out = root / f"results/optimizer_states/x{index}-0000000{index}/result.json"
            records.append((out, run_experiment(f"optimizer_states/x{index}", config, out, inputs=(source,))))
        yield root, source, records


def test_pooled_error_is_the_signal_weighted_error_of_each_parameters_moments(trained):
    _, source, _ = trained
    checkpoint = source.parent / "checkpoint.pt"
    spec = get_format("fp8_e4m3_g128")
    states = load_checkpoint(checkpoint)["optimizer"]["state"]
    for expand in (False, True):
        pooled = checkpoint_state_error(checkpoint, spec, expand)
        assert set(pooled) == {"exp_avg", "exp_avg_sq"}
        for name, error in pooled.items():
            tensors = [moments[name] for moments in states.values()]
            assert len(tensors) == len(states) > 1  # every trained parameter has both moments
            signal = [t.double().square().sum().item() for t in tensors]
            noise = [
                s * quantization_error(t, quantize_state(t, spec, expand)).relative_mse
                for s, t in zip(signal, tensors, strict=True)
            ]
            assert error.relative_mse == pytest.approx(sum(noise) / sum(signal), rel=1e-9)
            assert 0 < error.relative_mse < 1e-2 and math.isfinite(error.qsnr_db)


def test_the_kind_records_both_moments_and_the_claim_reads_them(trained):
    _, _, records = trained
    for _, record in records:
        assert record.status == "ok", record.message
        assert {(m.name, m.labels["state"]) for m in record.metrics} == {
            (name, state)
            for name in ("relative_mse", "qsnr_db", "bias", "alignment")
            for state in ("exp_avg", "exp_avg_sq")
        }
    table = collect([out for out, _ in records])
    claim = next(c for c in load_claims() if c.id == "optimizer-fp8")
    part = next(p for p in claim.parts if p.id == "state-error")
    decision = decide_part(table, part)
    assert decision.verdict in (CONFIRMED, REFUTED)  # decided: both settings and both moments ran
    assert set(decision.run_ids) == {"optimizer_states/x0", "optimizer_states/x1"}
    plain = {m.labels["state"]: m.value for m in records[0][1].metrics if m.name == "relative_mse"}
    expanded = {m.labels["state"]: m.value for m in records[1][1].metrics if m.name == "relative_mse"}
    ratios = [n.ours for n in decision.numbers if n.name.endswith("ratio")]
    assert ratios == pytest.approx([expanded[s] / plain[s] for s in ("exp_avg", "exp_avg_sq")])


def test_a_gpu_hardware_entry_plans_and_runs_as_an_unsupported_row(tmp_path):
    """The kind computes on the CPU: under a GPU's entry it plans (no traceback) and its run says why it is
    unsupported."""
    from tradeoffs.pipeline.config import load_experiment
    from tradeoffs.pipeline.runner import run_experiment

    config = load_experiment("optimizer_states", ["hardware=h100_sxm"])
    record = run_experiment("optimizer_states/gpu", config, tmp_path / "result.json", job_threads=1)
    assert record.status == "unsupported" and "computes on the CPU only" in record.message
