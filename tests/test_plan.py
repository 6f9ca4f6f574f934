"""The planner: stable, distinct, readable ids; exclusions; the cache."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tradeoffs.errors import ConfigError
from tradeoffs.pipeline.plan import build_plan, load_plan
from tradeoffs.presets import preset_files


@pytest.fixture(scope="module")
def quick_plan():
    """The default suite's plan, composed once for the module (it has a few hundred experiments)."""
    return build_plan("quick")


ID = re.compile(r"^[a-z0-9_]+/[A-Za-z0-9.+_-]+-[0-9a-f]{8}$")


def test_ids_are_readable_distinct_and_cover_the_grid(quick_plan):
    plan = quick_plan
    ids = [e.id for e in plan.experiments]
    assert all(ID.match(i) for i in ids), ids[:3]
    assert len(set(ids)) == len(ids)
    assert len({e.config_json() for e in plan.experiments}) == len(ids)
    assert "numerics/mxfp4_gaussian_none-" in " ".join(ids)
    assert "numerics/quantizer_mxfp4-sr_gaussian_hadamard-" in " ".join(ids)
    counts = {study: sum(e.config["study"] == study for e in plan.experiments) for study in plan.studies()}
    expected = {"numerics": 10 * 4 * 2, "quantizer": 9 * 2 * 2, "crossover": 5, "lmul": 2, "train": 6, "capture": 20}
    assert {study: counts[study] for study in expected} == expected


def test_zip_axes_vary_together_and_studies_reuse_a_kind(quick_plan):
    plan = quick_plan
    pairs = {(e.config["int_format"]["name"], e.config["fp_format"]["name"]) for e in plan.of_kind("crossover")}
    assert pairs == {
        ("mxint8", "mxfp8_e4m3"),
        ("mxint6", "mxfp6_e2m3"),
        ("mxint4", "mxfp4"),
        ("nvint4", "nvfp4"),
        ("int8_tensor", "fp8_e4m3"),
    }
    assert {e.config["study"] for e in plan.of_kind("numerics")} == {"numerics", "quantizer"}


def test_ids_are_stable_across_processes():
    code = (
        "from tradeoffs.pipeline.plan import build_plan; "
        "print('\\n'.join(e.id for e in build_plan('smoke').experiments))"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    second = [e.id for e in build_plan("smoke").experiments]
    assert first.split() == second


def test_planned_config_is_fully_resolved():
    experiment = build_plan("smoke").experiments[0]
    assert experiment.config["kind"] == "numerics"
    assert experiment.config["n_values"] == 65536  # the suite's fixed override
    assert experiment.config["format"]["element"] in ("int8", "fp4_e2m1")
    assert "${" not in experiment.config_json()


def _suite(workflow_dir, text):
    (workflow_dir / "conf" / "suite" / "custom.yaml").write_text(text)


def test_exclusions_remove_matching_points(workflow_dir):
    _suite(
        workflow_dir,
        """
experiments:
  numerics:
    sweep: {format: [int8, mxfp4], distribution: [gaussian, laplace], rotation: [none, hadamard]}
    fixed: {n_values: 4096, row_size: 64}
    exclude:
      - {format: int8, rotation: hadamard}
      - {format: mxfp4, distribution: [laplace]}
""",
    )
    points = {tuple(e.overrides[-3:]) for e in build_plan("custom").experiments}
    assert len(points) == 8 - 2 - 2
    assert not any("format=int8" in p and "rotation=hadamard" in p for p in points)
    assert not any("format=mxfp4" in p and "distribution=laplace" in p for p in points)


def test_bad_suite_fails_before_any_job_naming_the_experiment(workflow_dir):
    _suite(
        workflow_dir,
        "experiments:\n  numerics:\n    sweep: {format: [int8, mxfp4]}\n    fixed: {row_size: 48, n_values: 480}\n",
    )
    with pytest.raises(ConfigError, match=r"format=mxfp4.*block_size=32 does not divide row_size=48"):
        build_plan("custom")
    _suite(workflow_dir, "experiments:\n  numerics:\n    sweep: {format: [int8]}\n    exclude: [{fromat: int8}]\n")
    with pytest.raises(ConfigError, match=r"fromat.*not sweep axes"):
        build_plan("custom")


def test_duplicate_points_are_reported(workflow_dir):
    _suite(workflow_dir, "experiments:\n  numerics:\n    sweep: {format: [int8, int8]}\n")
    with pytest.raises(ConfigError, match=r"same experiment"):
        build_plan("custom")


def test_plan_cache_follows_conf_changes(workflow_dir):
    before = {e.id for e in load_plan("smoke").experiments}
    assert {e.id for e in load_plan("smoke").experiments} == before  # served from the cache
    nvfp4 = workflow_dir / "conf" / "format" / "nvfp4.yaml"  # replaces the preset of that name
    nvfp4.parent.mkdir()
    nvfp4.write_text(preset_files("format")["nvfp4"].read_text().replace("block_size: 16", "block_size: 32"))
    after = {e.id for e in load_plan("smoke").experiments}
    changed = before ^ after
    assert changed and all("nvfp4" in i for i in changed)
    assert len(list((workflow_dir / ".snakemake" / "tradeoffs").glob("plan-smoke-*.json"))) == 1


def test_a_source_study_makes_one_run_per_matching_source_with_its_result_as_input(quick_plan):
    plan = quick_plan
    trains = {e.id: e for e in plan.of_kind("train")}
    captures = plan.of_kind("capture")
    assert len(captures) == 10 * 2  # formats x rotations, one fp32 source
    for capture in captures:
        (source_path,) = capture.inputs
        source_id = capture.config["source_id"]
        assert source_path == trains[source_id].result_path
        assert trains[source_id].config["recipe"]["name"] == "fp32"
        assert capture.config["source"]["model"] == trains[source_id].config["model"]


def test_a_source_without_matching_experiments_fails_naming_the_study(workflow_dir):
    suite = workflow_dir / "conf" / "suite" / "orphan.yaml"
    suite.write_text("experiments:\n  capture:\n    source: train\n    sweep:\n      format: [int8]\n")
    with pytest.raises(ConfigError, match=r"study 'capture': source 'train' has no planned experiment"):
        build_plan("orphan")
