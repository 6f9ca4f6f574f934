"""`python -m tradeoffs compare RUN_A RUN_B` on small real runs: the L-Mul study (a claim decides from it) and a
GEMM benchmark (timings), collected with the project's writers into two project directories whose products are
drawn by the report's own writers. A rerun that changes only timings, hashes and provenance compares equal; a
changed metric fails in the results, the claims, the figure's data and the table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tradeoffs.__main__ import main
from tradeoffs.report import write_figure, write_table_file
from tradeoffs.report.claims.stability import VARYING_METRICS
from tradeoffs.report.compare import compare_runs, run_name, timing_rows, without_hash
from tradeoffs.results import write_table

PRODUCTS = ("numerics_lmul", "bench_gemm")  # each a figure and a table
EXPERIMENTS = [
    ("lmul", "lmul/loguniform-1a2b3c4d", ["study=lmul", "operands=loguniform", "n_values=16384"]),
    ("lmul", "lmul/gaussian-5e6f7a8b", ["study=lmul", "operands=gaussian", "n_values=16384"]),
    (
        "gemm",
        "gemm/64-9c0d1e2f",
        ["study=gemm", "shapes=[[64,64,64],[32,32,32]]", "bench.min_time_s=0.01", "hardware.threads=1"],
    ),
]


def make_run(root: Path, table: pd.DataFrame) -> Path:
    """A project directory holding `table` as its results and the figures and tables drawn from it."""
    results = root / "results" / "results.parquet"
    results.parent.mkdir(parents=True)
    write_table(table, results, results.with_suffix(".csv"))
    for name in PRODUCTS:
        write_figure(name, results, root / "reports" / "figures" / f"{name}.png")
        write_table_file(name, results, root / "reports" / "tables" / f"{name}.csv")
    return root


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    """The tidy table of the three real runs."""
    from tradeoffs.pipeline.config import load_experiment
    from tradeoffs.pipeline.runner import run_experiment
    from tradeoffs.results import collect

    root = tmp_path_factory.mktemp("runs")
    paths = []
    for kind, run_id, overrides in EXPERIMENTS:
        path = root / run_id / "result.json"
        assert run_experiment(run_id, load_experiment(kind, overrides), path, job_threads=1).status == "ok"
        paths.append(path)
    return collect(paths, suite="quick")


@pytest.fixture(scope="module")
def first(table, tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("first"), table)


def _rehashed(table: pd.DataFrame) -> pd.DataFrame:
    """The table as a schema change leaves it: every id with another hash."""
    return table.assign(id=table["id"].str.replace(r"-[0-9a-f]{8}$", "-00ff00ff", regex=True))


def test_a_rerun_that_changes_only_timings_hashes_and_provenance_compares_equal(table, first, tmp_path, capsys):
    second = _rehashed(table)
    timing = second["metric"].isin(VARYING_METRICS) | second["label.noise"].notna()
    assert timing.any() and not timing.all()
    second.loc[timing, "value"] *= 1.7
    second.loc[second["label.noise"].notna(), "label.noise"] = "suspect"
    second["wall_s"] *= 3
    second["prov.host"] = "another-host"
    second.loc[second["id"].str.startswith("gemm/"), "status"] = "invalid"  # a timed benchmark's validity
    skipped = second["label.shape"] == "32x32x32"  # a case a timed benchmark had no time for
    second = second[~skipped]
    comparison = compare_runs(first, make_run(tmp_path / "second", second))

    assert not comparison.differs, comparison.text()
    sections = {section.title: section for section in comparison.sections}
    assert sections["results"].compared.startswith(f"{int((~timing & ~skipped).sum())} metric rows of 3 runs ok")
    assert "gemm/64: status ok -> invalid (a timed benchmark's)" in sections["results"].left_out
    cases = f"{int((skipped & ~timing).sum())} row(s) of timed benchmarks in one table only"
    assert any(line.startswith(cases) for line in sections["results"].left_out)
    assert sections["figures"].compared == "2 figures' plotted data"
    assert sections["tables"].compared == "2 tables"
    assert any(line.startswith("figure bench_gemm: ") for line in sections["figures"].left_out)
    assert any(line.startswith("table bench_gemm: ") for line in sections["tables"].left_out)
    assert not any("numerics_lmul" in line for s in comparison.sections for line in s.left_out)

    main(["compare", str(first), str(tmp_path / "second")])  # exits 0: no SystemExit
    assert capsys.readouterr().out.rstrip().endswith(": no difference in any non-timing value")


def test_a_changed_metric_fails_in_the_results_the_claims_the_figure_and_the_table(table, first, tmp_path, capsys):
    second = table.copy()
    changed = (second["metric"] == "mean_relative_error") & (second["label.multiplier"] == "lmul_m3")
    assert changed.sum() == 2
    second.loc[changed, "value"] *= 10
    make_run(tmp_path / "second", second)
    comparison = compare_runs(first, tmp_path / "second")

    assert comparison.differs
    sections = {section.title: section for section in comparison.sections}
    results = sections["results"].differences
    assert len(results) == 2 and all(" mean_relative_error [" in line for line in results)
    assert any(line.startswith("lmul/loguniform mean_relative_error [multiplier=lmul_m3") for line in results)
    assert [line.split(":")[0] for line in sections["claims"].differences] == ["lmul/3bit-beats-e5m2"]
    assert sections["figures"].differences and all(
        line.startswith("figure numerics_lmul: ") for line in sections["figures"].differences
    )
    assert sections["tables"].differences and all(
        line.startswith("table numerics_lmul: row 'lmul_m3'") for line in sections["tables"].differences
    )
    with pytest.raises(SystemExit) as exit_status:
        main(["compare", str(first), str(tmp_path / "second")])
    assert exit_status.value.code == 1
    assert (
        capsys.readouterr()
        .out.rstrip()
        .endswith(f": {sum(len(s.differences) for s in comparison.sections)} difference(s)")
    )


def test_a_metric_named_with_ignore_is_left_out_everywhere(table, first, tmp_path):
    second = table.copy()
    second.loc[(second["metric"] == "mean_relative_error") & (second["label.multiplier"] == "lmul_m3"), "value"] *= 10
    comparison = compare_runs(first, make_run(tmp_path / "second", second), ignore=["mean_relative_error"])

    assert not comparison.differs, comparison.text()
    sections = {section.title: section for section in comparison.sections}
    assert any(line.startswith("reads mean_relative_error (--ignore): lmul/") for line in sections["claims"].left_out)
    assert any(line.startswith("figure numerics_lmul: ") for line in sections["figures"].left_out)
    assert any(line.startswith("table numerics_lmul: ") for line in sections["tables"].left_out)


def test_runs_in_one_table_only_and_a_figure_without_saved_data(table, first, tmp_path):
    second = table[~table["id"].str.startswith("lmul/gaussian")]
    make_run(tmp_path / "second", second)
    older = tmp_path / "older"
    shutil.copytree(first, older)
    (older / "reports" / "figures" / "bench_gemm.csv").unlink()  # drawn before figures saved their data
    comparison = compare_runs(older, tmp_path / "second")

    sections = {section.title: section for section in comparison.sections}
    assert "run in the first table only: lmul/gaussian (ok)" in sections["results"].differences
    assert any(line.startswith("table numerics_lmul: ") for line in sections["tables"].differences)
    made = f"{older} saved no plotted data of 1 figure(s) (bench_gemm): made again from its table by this code"
    assert made in sections["figures"].notes
    assert not any(line.startswith("figure bench_gemm: ") for line in sections["figures"].differences)


def test_a_row_whose_labels_changed_is_paired_with_its_counterpart(table, first, tmp_path):
    second = table.copy()
    row = second.index[(second["metric"] == "mean_relative_error") & (second["label.multiplier"] == "lmul_m3")][0]
    second.loc[row, "label.multiplier"] = "lmul_m3_renamed"
    comparison = compare_runs(first, make_run(tmp_path / "second", second))

    results = {section.title: section for section in comparison.sections}["results"].differences
    assert len(results) == 1 and results[0].startswith(
        f"{run_name(second.at[row, 'id'])} mean_relative_error: labels ["
    )
    assert "multiplier=lmul_m3] -> [multiplier=lmul_m3_renamed]" in results[0]


def test_the_figure_data_beside_a_figure_holds_the_values_it_plots(table, first):
    data = pd.read_csv(first / "reports" / "figures" / "numerics_lmul.csv")
    errors = table.loc[table["metric"] == "mean_relative_error", "value"]
    heights = data.loc[data["artist"] == "bar", "height"]
    assert len(errors) > 4 and set(errors.round(12)) <= set(heights.round(12))
    ticks = set(data.loc[data["artist"] == "xtick", "text"])
    assert {"lmul_m3", "fp8_e5m2"} <= ticks


def test_ids_match_without_their_hash_and_timings_are_the_projects():
    assert run_name("numerics/mxfp4_gaussian_none-1a2b3c4d") == "numerics/mxfp4_gaussian_none"
    assert without_hash("read numerics/a-1a2b3c4d, train/b.c-0123abcd") == "read numerics/a, train/b.c"
    frame = pd.DataFrame(
        {"metric": ["tflops", "qsnr_db", "samples", None, "peak_rss"], "label.noise": [None, None, "warn", None, None]}
    )
    assert timing_rows(frame).tolist() == [True, False, True, False, True]  # peak RSS: measured memory
    assert timing_rows(frame, ignore=["qsnr_db"]).tolist() == [True, True, True, False, True]


def test_a_run_that_is_not_a_project_directory_is_refused(first, tmp_path):
    with pytest.raises(SystemExit, match="is not a directory"):
        main(["compare", str(first), str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="not found"):
        main(["compare", str(first), str(tmp_path)])
