"""Reports of studies without a successful run: every report product and the claims engine state "no successful
runs of study X (N failed: first reasons ...)" instead of crashing, on hand-built tables of unsuccessful runs and
on a real Snakemake run of a suite whose every study fails; an unreadable result's error row keeps the
provenance columns' types."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import copy_workflow
from tradeoffs.__main__ import main
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report import FIGURES, TABLES, planned_products, write_figure, write_table_file
from tradeoffs.report.claims import decide_part, parse_claims, write_claims
from tradeoffs.report.claims.verdicts import HARDWARE_ABSENT, INCONCLUSIVE, RUNS_FAILED
from tradeoffs.report.common import no_successful_runs, without_success
from tradeoffs.results import ResultRecord, write_result

UNSUCCESSFUL = ("unsupported", "error", "invalid", "diverged")


def _rows(study: str, statuses: list[str], messages: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"{study}/r{i}" for i in range(len(statuses))],
            "kind": study,
            "status": statuses,
            "message": messages,
            "metric": None,
            "value": float("nan"),
            "cfg.study": study,
        }
    )


def test_the_statement_counts_the_runs_and_quotes_the_first_distinct_reasons():
    runs = _rows(
        "ptq",
        ["unsupported", "unsupported", "error", "error", "invalid"],
        ["no FP8 units", "no FP8 units", "RuntimeError: a", "RuntimeError: b", "NaN loss"],
    )
    table = pd.concat([runs, _rows("numerics", ["ok"], [""])], ignore_index=True)
    assert without_success(table, ["ptq", "numerics", "gemm"]) == ["ptq", "gemm"]
    statement = no_successful_runs(table, "ptq")
    assert statement == (
        "no successful runs of study 'ptq' (5 failed: first reasons: unsupported: no FP8 units | "
        "error: RuntimeError: a | error: RuntimeError: b | and 1 other reason(s))"
    )


def _record(study: str, status: str) -> ResultRecord:
    return ResultRecord(
        id=f"{study}/{study}-{status}",
        kind=study,
        status=status,
        message=f"{status} because of {study}",
        config={"study": study, "seed": 0},
        metrics=[],
        timings={"wall_s": 0.1},
        provenance={"host": "h", "gpu": None, "torch_threads": 1},
        seed=0,
        started="",
        ended="",
    )


def test_every_product_and_the_claims_state_studies_without_a_successful_run(tmp_path):
    """Every study of every product has only unsupported, error, invalid or diverged runs (metric-less rows): each
    figure and table is written and is the statement, and every claim part is inconclusive, quoting it."""
    studies = sorted(
        {s for registry in (FIGURES, TABLES) for p in registry.values() for s in (*p.studies, *p.optional)}
    )
    paths = []
    for i, study in enumerate(studies):
        paths.append(tmp_path / f"results/{study}/result.json")
        write_result(paths[-1], _record(study, UNSUCCESSFUL[i % len(UNSUCCESSFUL)]))
    main(["collect", str(tmp_path / "t.parquet"), str(tmp_path / "t.csv"), *map(str, paths)])

    for name, product in TABLES.items():
        write_table_file(name, tmp_path / "t.parquet", tmp_path / f"{name}.csv")
        table = pd.read_csv(tmp_path / f"{name}.csv", index_col="id")
        markdown = (tmp_path / f"{name}.md").read_text()
        for study in product.studies:
            assert table.loc[study, "status"] == "no successful runs", name
            assert table.loc[study, "message"].startswith(f"no successful runs of study '{study}' (1 failed: "), name
            assert f"no successful runs of study '{study}'" in markdown, name
    for name in FIGURES:
        write_figure(name, tmp_path / "t.parquet", tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000, name
        assert "no successful runs of study" in (tmp_path / f"{name}.svg").read_text(), name

    verdicts = write_claims(tmp_path / "t.parquet", tmp_path / "claims.md", tmp_path / "claims.csv")
    assert all(part.decision.verdict == INCONCLUSIVE for claim in verdicts for part in claim.parts)
    assert "no successful runs of study" in (tmp_path / "claims.md").read_text()


def _part(statuses: list[str]):
    entry = {
        "id": "c",
        "papers": ["p"],
        "statement": "s",
        "parts": [
            {
                "id": "p",
                "statement": "s",
                "criterion": "faster_where_units",
                "params": {"dtypes": ["bf16"]},
                "reads": {"gemm": {}},
                "study": "gemm",
                "statuses": statuses,
            }
        ],
    }
    return parse_claims({"claims": [entry]})[0].parts[0]


def test_a_claim_reading_a_study_without_success_is_inconclusive_with_the_statement():
    """The GEMM criterion reads unsupported runs beside ok ones: on a study of unsupported runs only it would get
    rows without a shape; it is not run, and the part says why."""
    unsupported = _rows("gemm", ["unsupported"] * 3, ["no CUDA device"] * 3)
    decision = decide_part(unsupported, _part(["ok", "unsupported"]))
    assert (decision.verdict, decision.reason) == (INCONCLUSIVE, HARDWARE_ABSENT)
    assert decision.test == "no successful runs of study 'gemm' (3 failed: first reasons: unsupported: no CUDA device)"
    assert decision.run_ids == ("gemm/r0", "gemm/r1", "gemm/r2")

    failed = _rows("gemm", ["unsupported", "error"], ["no CUDA device", "OSError: disk full"])
    decision = decide_part(failed, _part(["ok"]))
    assert (decision.verdict, decision.reason) == (INCONCLUSIVE, RUNS_FAILED)
    assert decision.test.startswith("no successful runs of study 'gemm' (2 failed: ") and "disk full" in decision.test


def test_an_unreadable_result_keeps_provenance_types_and_the_benchmark_products_draw(workflow_dir):
    """A real GEMM run on this CPU, a bandwidth run under a GPU's entry (unsupported here) and a truncated
    result.json (an error row without provenance): prov.gpu stays text, integer provenance stays integer, and
    the benchmark products draw the GEMM run (the optional bandwidth study without success is left out)."""
    gemm = workflow_dir / "results/gemm/g/result.json"
    config = load_experiment("gemm", ["shapes=[[64,64,64]]", "bench.min_time_s=0.01", "hardware.threads=1"])
    assert run_experiment("gemm/g", config, gemm).status == "ok"
    bandwidth = workflow_dir / "results/bandwidth/b/result.json"
    config = load_experiment("bandwidth", ["log2_elements=12", "hardware=h100_sxm"])
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the bandwidth run under a GPU's entry would succeed")
    assert run_experiment("bandwidth/b", config, bandwidth).status == "unsupported"
    truncated = workflow_dir / "results/gemm/truncated/result.json"
    truncated.parent.mkdir(parents=True)
    truncated.write_text(gemm.read_text()[:200])
    main(["collect", "t.parquet", "t.csv", str(gemm), str(bandwidth), str(truncated)])

    table = pd.read_parquet("t.parquet")
    assert set(table.drop_duplicates("id")["status"]) == {"ok", "unsupported", "error"}
    assert not pd.api.types.is_float_dtype(table["prov.gpu"]) and table["prov.gpu"].isna().all()
    assert pd.api.types.is_integer_dtype(table["prov.torch_threads"])
    assert table.loc[table["id"] == "gemm/g", "prov.torch_threads"].iloc[0] == 1

    write_table_file("bench_gemm", Path("t.parquet"), Path("gemm.csv"))
    rows = pd.read_csv("gemm.csv")
    assert (rows["tflops"] > 0).any() and "gemm/truncated" in set(rows.iloc[:, 0])
    for name in ("bench_gemm", "bench_roofline"):
        write_figure(name, Path("t.parquet"), Path(f"{name}.png"))
        svg = Path(f"{name}.svg").read_text()
        assert "TFLOP/s" in svg and "no successful runs of study 'gemm'" not in svg and "gemm/truncated" in svg, name
    assert "not drawn: no successful runs of study 'bandwidth' (1 failed: " in Path("bench_roofline.svg").read_text()


# --------------------------------------------------------------------- a real run where every study fails
FAILING_SUITE = """\
name: failing
description: Every study fails fast (GPU-only hardware on a CPU, or a source study that failed).
experiments:
  numerics:
    fixed: {format: int8, n_values: 4096, row_size: 64, hardware: h100_sxm}
  gemm:
    fixed: {dtype: fp32, shapes: [[1, 64, 64]], hardware: h100_sxm}
  bandwidth:
    fixed: {log2_elements: 16, hardware: h100_sxm}
  qdq:
    fixed: {format: mxfp4, log2_elements: 16, hardware: h100_sxm}
  train:
    fixed: &tiny {recipe: fp32, model: gpt-tiny, model.context_length: 32, batch_size: 4, steps: 2,
                  eval_interval: 2, eval_windows: 4, hardware: h100_sxm}
  capture:
    source: train
    fixed: {format: int8}
  ladder:
    kind: train
    fixed: *tiny
  scaling_law:
    kind: scaling_fit
    source: ladder
  stability:
    kind: train
    fixed: {<<: *tiny, recipe: minifloat}
"""


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the suite fails by asking for a GPU this machine lacks")
def test_a_suite_whose_every_study_fails_still_writes_every_product_and_the_claims(tmp_path, monkeypatch):
    """Real Snakemake on a suite of studies that cannot succeed here (unsupported under a GPU's entry, or an
    error because their source failed): every product of its studies and claims.md are written, and a product
    of a study without success is the statement."""
    copy_workflow(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRADEOFFS_ROOT", raising=False)
    (tmp_path / "conf/suite/failing.yaml").write_text(FAILING_SUITE)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    result = subprocess.run(
        [snakemake, "--cores", "2", "--keep-going", "--config", "suite=failing"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    failed_rules = {
        rule: (tmp_path / f"results/logs/{rule}.log").read_text()[-1500:]
        for rule in re.findall(r"Error in rule (\w+):", result.stderr)
        if (tmp_path / f"results/logs/{rule}.log").is_file()
    }
    assert result.returncode == 0, (failed_rules, result.stderr[-3000:])

    table = pd.read_parquet(tmp_path / "results/results.parquet")
    runs = table.drop_duplicates("id")
    assert len(runs) == 9 and set(runs.loc[runs["kind"] != "scaling_fit", "status"]) <= {"unsupported", "error"}
    studies = sorted(set(table["cfg.study"]))
    hopeless = set(without_success(table, studies))
    assert hopeless >= set(studies) - {"scaling_law"}
    for name in planned_products(TABLES, studies):
        markdown = (tmp_path / f"reports/tables/{name}.md").read_text()
        for study in hopeless & set(TABLES[name].studies):
            assert f"no successful runs of study '{study}' (1 failed: first reasons: " in markdown, name
    for name in planned_products(FIGURES, studies):
        svg = (tmp_path / f"reports/figures/{name}.svg").read_text()
        assert (tmp_path / f"reports/figures/{name}.png").stat().st_size > 5_000, name
        if hopeless & set(FIGURES[name].studies):
            assert "no successful runs of study" in svg, name
    claims = (tmp_path / "reports/claims.md").read_text()
    assert "no successful runs of study 'gemm' (1 failed: first reasons: unsupported: hardware=h100_sxm" in claims
    assert "no successful runs of study 'capture' (1 failed: first reasons: error: " in claims
    verdicts = pd.read_csv(tmp_path / "reports/tables/claims.csv")
    assert set(verdicts["verdict"]) == {"inconclusive"}
