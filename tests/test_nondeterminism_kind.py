"""The nondeterminism kind on a real trained model: a gpt-tiny trained a few steps through the runner, then the
kind through the runner with the train result as its planned input; its rows are the library's on the same
checkpoint and evaluation prompts, the report draws and tabulates them, the claim reads them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from conftest import TRAIN_TINY, copy_workflow
from tradeoffs.data import load_dataset
from tradeoffs.errors import ConfigError
from tradeoffs.kinds import get_kind
from tradeoffs.kinds.base import Job
from tradeoffs.kinds.sources import load_trained_model
from tradeoffs.nondeterminism import prompt_windows, run_study
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report import TABLES, write_figure, write_table_file
from tradeoffs.report.claims import evaluate_claims, load_claims
from tradeoffs.report.claims.verdicts import NOT_IN_SUITE
from tradeoffs.results import collect

PRECISIONS = ["fp32", "fp16", "bf16", "layercast"]
PERTURBATIONS = ["batch=1", "shuffle=1", "split_k=3", "split_k=3,partials=rounded", "attention=native", "blas=cublaslt"]
RAN = PERTURBATIONS[:-1]  # blas=cublaslt selects a CUDA library: skipped on a CPU
STUDY = [
    "study=nondeterminism",
    "prompts=6",
    "prompt_length=8",
    "new_tokens=8",
    f"precisions=[{','.join(PRECISIONS)}]",
    "perturbations=[" + ",".join(f"'{p}'" for p in PERTURBATIONS) + "]",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(root, train config, train result path, nondeterminism config, its record, the tidy table)."""
    root = copy_workflow(tmp_path_factory.mktemp("nondeterminism"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("TRADEOFFS_ROOT", raising=False)
        train = load_experiment("train", [*TRAIN_TINY, "study=train", "steps=4", "eval_interval=4"])
        source = root / "results/train/tiny-00000000/result.json"
        assert run_experiment("train/tiny-00000000", train, source, job_threads=1).status == "ok"
        config = load_experiment("nondeterminism", [*STUDY, "source_id=train/tiny-00000000"])
        config.source = train
        out = root / "results/nondeterminism/tiny-00000001/result.json"
        record = run_experiment("nondeterminism/tiny-00000001", config, out, job_threads=1, inputs=(source,))
        yield root, train, source, config, record, collect([source, out])


def test_the_kind_records_the_librarys_rows_on_the_checkpoint_and_evaluation_prompts(runs):
    _, train, source, config, record, _ = runs
    assert record.status == "ok", record.message
    assert record.message == "blas=cublaslt skipped: blas=cublaslt selects a CUDA BLAS library; the study runs on cpu"
    shares = {
        (m.labels["precision"], m.labels["perturbation"]) for m in record.metrics if m.name == "identical_fraction"
    }
    assert shares == {(p, q) for p in PRECISIONS for q in RAN}
    curve = [m for m in record.metrics if m.name == "agreement_at_position"]
    assert len(curve) == len(shares) * config.new_tokens
    assert set(record.timings) >= {"study_s", "fp32/reference", "bf16/split_k=3,partials=rounded"}

    model = load_trained_model(Job(source.parent, (source,)), train, "train/tiny-00000000").model
    validation = load_dataset(train.data).splits["validation"]
    expected = run_study(model, prompt_windows(validation, 6, 8, config.seed), config).metric_rows()
    got = [(m.name, m.value, m.unit, m.labels) for m in record.metrics]
    assert len(got) == len(expected)
    for (name, value, unit, labels), row in zip(got, expected, strict=True):
        assert (name, unit, labels) == (row.name, row.unit, row.labels)
        assert value == row.value or (math.isnan(value) and math.isnan(row.value)), (name, labels)


def test_the_report_draws_and_tabulates_the_runs(runs, tmp_path):
    _, _, _, config, _, table = runs
    parquet = tmp_path / "results.parquet"
    table.to_parquet(parquet, index=False)
    write_figure("nondeterminism_agreement", parquet, tmp_path / "agreement.png")
    write_table_file("nondeterminism_divergence", parquet, tmp_path / "divergence.csv")
    assert (tmp_path / "agreement.png").stat().st_size > 10_000

    written = pd.read_csv(tmp_path / "divergence.csv", index_col=[0, 1])
    assert list(written.index) == [(p, q) for p in PRECISIONS for q in RAN]  # precisions, then the config's order
    frame = TABLES["nondeterminism_divergence"].make(table)
    rows = table[table["cfg.study"] == "nondeterminism"]
    positions = rows[rows["metric"] == "first_divergence_position"]
    diverged = positions.groupby(["label.precision", "label.perturbation"])["value"].count()
    for (precision, perturbation), line in frame.iterrows():
        assert line["prompts"] == config.prompts
        assert line["diverged prompts"] == diverged[(precision, perturbation)]
        share = rows[(rows["metric"] == "identical_fraction") & (rows["label.precision"] == precision)]
        share = share[share["label.perturbation"] == perturbation]["value"].item()
        assert line["identical to the end (share)"] == share == 1 - line["diverged prompts"] / config.prompts


def test_the_claim_reads_the_runs(runs):
    *_, table = runs
    (claim,) = [c for c in load_claims() if c.id == "nondeterminism"]
    (verdict,) = evaluate_claims(table, [claim])
    for part in verdict.parts:
        assert part.decision.reason != NOT_IN_SUITE, (part.part, part.decision.test)
        assert part.decision.run_ids == ("nondeterminism/tiny-00000001",), part.part


def test_bad_settings_are_named_before_any_run():
    with pytest.raises(ConfigError, match=r"precisions: invalid value 'fp8'.*layercast"):
        load_experiment("nondeterminism", ["precisions=[fp8]"])
    with pytest.raises(ConfigError, match=r"device: 'cuda' differs from hardware.device 'cpu'"):
        load_experiment("nondeterminism", ["device=cuda"])
    with pytest.raises(ConfigError, match=r"perturbations: split_k must be an integer, got 'x'"):
        load_experiment("nondeterminism", ["perturbations=['split_k=x']"])


def test_a_job_asks_for_the_threads_of_its_most_threaded_order():
    sizer = get_kind("nondeterminism").resources
    assert sizer(load_experiment("nondeterminism", [])).threads == 2  # the default orders include threads=2
    assert sizer(load_experiment("nondeterminism", ["perturbations=['split_k=2']"])).threads == 1
