"""Real Snakemake runs of the smoke suite in a temporary copy of the workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
pytestmark = pytest.mark.slow


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [SNAKEMAKE, *args, "--config", "suite=smoke"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "TRADEOFFS_ROOT"}, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, Path]:
    """One real run of the smoke suite (every experiment, report product and verdict) in a copy of the workflow,
    and a copy of its table and claims taken before a test changes the workflow."""
    from conftest import copy_workflow

    root = copy_workflow(tmp_path_factory.mktemp("smoke"))
    snakemake("--cores", "2", cwd=root)
    first = tmp_path_factory.mktemp("first")
    shutil.copy2(root / "results" / "results.parquet", first)
    shutil.copy2(root / "reports" / "tables" / "claims.csv", first)
    return root, first


def result_mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in (root / "results").rglob("result.json")}


def test_smoke_suite_end_to_end_report_then_rerun_only_what_changed(smoke_run, monkeypatch):
    """One real run of the smoke suite (every study, every report product, the claims' verdicts) and its HTML
    report, then a one-value change in conf/ that reruns exactly the affected experiments (each experiment is its
    own job, run through the warm worker), collect, the products and the claims. Snakemake's lint is the README's
    `make lint`, run by tests/test_readme_commands.py."""
    workflow_dir, _ = smoke_run
    monkeypatch.chdir(workflow_dir)
    monkeypatch.delenv("TRADEOFFS_ROOT", raising=False)
    table = pd.read_parquet(workflow_dir / "results" / "results.parquet")
    assert set(table["status"]) == {"ok"}, table.loc[table["status"] != "ok", ["id", "message"]]
    from tradeoffs.pipeline.plan import load_plan

    n_planned = len(load_plan("smoke").experiments)
    assert table["id"].nunique() == n_planned
    assert (workflow_dir / "results" / "results.csv").is_file()
    from tradeoffs.report import FIGURES, TABLES, planned_products

    studies = load_plan("smoke").studies()
    for name in planned_products(FIGURES, studies):
        assert (workflow_dir / "reports" / "figures" / f"{name}.png").stat().st_size > 10_000, name
        assert (workflow_dir / "reports" / "figures" / f"{name}.svg").stat().st_size > 10_000, name
    for name in planned_products(TABLES, studies):
        assert (workflow_dir / "reports" / "tables" / f"{name}.csv").stat().st_size > 20, name
        assert (workflow_dir / "reports" / "tables" / f"{name}.md").read_text().startswith("|"), name
    claims = pd.read_csv(workflow_dir / "reports" / "tables" / "claims.csv")
    from tradeoffs.report.claims import load_claims

    assert claims["claim"].nunique() == len(load_claims())
    assert set(claims["verdict"]) <= {"confirmed", "refuted", "inconclusive"}
    assert "# Paper claims and their verdicts" in (workflow_dir / "reports" / "claims.md").read_text()
    qsnr = pd.read_csv(workflow_dir / "reports" / "tables" / "numerics_qsnr.csv", index_col=0)
    assert {"int8", "nvfp4"} == set(qsnr.index)
    assert qsnr.loc["int8", "gaussian (none)"] > qsnr.loc["nvfp4", "gaussian (none)"] > 15

    snakemake("--report", "reports/report.html", cwd=workflow_dir)
    html = (workflow_dir / "reports" / "report.html").read_text(errors="replace")
    assert "numerics_qsnr.png" in html and "Quantization signal-to-noise ratio" in html
    assert "Paper claims: verdicts of this run" in html  # the page opens on the verdicts

    # Nothing to do on a second run.
    assert "Nothing to be done" in snakemake("-n", cwd=workflow_dir).stdout

    # Changing one format (a file in conf/format/ replaces the preset) reruns exactly its experiments, then
    # collect and the report products.
    from tradeoffs.presets import preset_files

    before = result_mtimes(workflow_dir)
    nvfp4 = workflow_dir / "conf" / "format" / "nvfp4.yaml"
    nvfp4.parent.mkdir()
    nvfp4.write_text(preset_files("format")["nvfp4"].read_text().replace("block_size: 16", "block_size: 32"))
    dry = snakemake("-n", cwd=workflow_dir).stdout
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", dry, flags=re.MULTILINE))
    assert planned["numerics"] == "2" and planned["collect"] == "1", dry[-2000:]
    snakemake("--cores", "2", cwd=workflow_dir)
    after = result_mtimes(workflow_dir)
    new = set(after) - set(before)
    assert len(new) == 2 and all("nvfp4" in path for path in new)
    assert all(after[path] == before[path] for path in before)  # untouched: no rerun
    table = pd.read_parquet(workflow_dir / "results" / "results.parquet")
    assert table["id"].nunique() == n_planned and set(
        table.loc[table["cfg.format.name"] == "nvfp4", "cfg.format.block_size"]
    ) == {32}


@pytest.mark.timeout(1800)
def test_a_second_run_of_the_smoke_suite_agrees_on_every_part_that_reads_no_timing(smoke_run, tmp_path):
    """The smoke suite run a second time from scratch (another copy, real Snakemake, fresh processes): every part
    that reads no timing gets the same verdict, reason and test as in the first run; `--against` lists no such
    part."""
    from conftest import copy_workflow
    from tradeoffs.report.claims import compare_claims
    from tradeoffs.report.claims.verdicts import CONFIRMED, REFUTED

    _, first_run = smoke_run
    root = copy_workflow(tmp_path)
    snakemake("reports/claims.md", "--cores", "2", cwd=root)
    tables = [first_run / "results.parquet", root / "results" / "results.parquet"]
    claims = [
        pd.read_csv(path, keep_default_na=False)
        for path in (first_run / "claims.csv", root / "reports" / "tables" / "claims.csv")
    ]
    assert set(pd.read_parquet(tables[0])["suite"]) == {"smoke"}
    assert (claims[0]["suite"].isin(["smoke", ""])).all() and (claims[0]["suite"] == "smoke").any()
    first, second = (c.set_index(["claim", "part"]) for c in claims)
    steady = first.index[first["timing"] == ""]
    assert len(steady) > len(first) / 2
    decided = first.loc[steady, "verdict"].isin([CONFIRMED, REFUTED]).sum()
    assert decided > 0  # the comparison covers decided parts, not only absent ones
    for column in ("verdict", "reason", "test"):
        assert first.loc[steady, column].equals(second.loc[steady, column]), column
    report = compare_claims(tables[0], tables[1])
    assert report.endswith(" 0 do not)"), report
