"""The presets ship inside the package (tradeoffs.presets), each in one place; the pipeline composes them as
config groups after conf/, where a file adds an option or replaces a preset; the plan cache follows them."""

from __future__ import annotations

import os
import shutil

import pytest

import tradeoffs.pipeline.plan
from conftest import ROOT
from tradeoffs.errors import ConfigError
from tradeoffs.formats import format_names, get_format
from tradeoffs.paths import use_project
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.presets import load_preset, preset_files, preset_groups


@pytest.fixture
def project_env(monkeypatch):
    """Restore what use_project sets in the environment after the test."""
    monkeypatch.delenv("TRADEOFFS_FORMATS", raising=False)
    monkeypatch.delenv("TRADEOFFS_DATA_CACHE", raising=False)


def test_each_preset_lives_in_the_package_only():
    assert preset_groups() == ("bench", "format", "hardware")
    for group in preset_groups():
        assert preset_files(group), group
        assert not (ROOT / "conf" / group).exists(), f"conf/{group}/ would be a second source of the presets"
    assert load_preset("format", "nvfp4")["block_size"] == 16


def test_the_library_reads_the_presets_without_a_project(tmp_path, monkeypatch, project_env):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEOFFS_ROOT", str(tmp_path / "nowhere"))
    assert get_format("nvfp4").block_size == 16 and "mxfp4" in format_names()


def test_a_format_file_in_conf_adds_a_format_and_replaces_a_preset(workflow_dir, project_env):
    formats = workflow_dir / "conf" / "format"
    formats.mkdir()
    (formats / "int5_rows.yaml").write_text("name: int5_rows\nelement: int5\ngranularity: channel\n")
    nvfp4 = preset_files("format")["nvfp4"].read_text()
    (formats / "nvfp4.yaml").write_text(nvfp4.replace("block_size: 16", "block_size: 32"))

    assert load_experiment("numerics", ["format=int5_rows"]).format.granularity == "channel"
    assert load_experiment("numerics", ["format=nvfp4"]).format.block_size == 32
    assert load_experiment("numerics", ["format=mxfp4"]).format.block_size == 32  # a preset beside them
    # By name too, in the library, once the pipeline has pointed it at the project (composing does).
    assert get_format("nvfp4").block_size == 32 and get_format("int5_rows").element == "int5"
    assert {"int5_rows", "nvfp4", "mxfp4"} <= set(format_names())
    assert os.environ["TRADEOFFS_DATA_CACHE"] == str(workflow_dir / "data" / "cache")


def test_an_unknown_format_names_the_presets(workflow_dir, project_env):
    use_project()
    with pytest.raises(ConfigError, match=r"unknown format 'nvfp5'.*mxfp4.*nvfp4"):
        get_format("nvfp5")


def test_the_plan_cache_key_follows_a_preset(tmp_path, monkeypatch):
    package = tmp_path / "tradeoffs"
    shutil.copytree(ROOT / "src" / "tradeoffs", package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(tradeoffs.pipeline.plan, "__file__", str(package / "pipeline" / "plan.py"))
    before = tradeoffs.pipeline.plan._inputs_digest()
    assert tradeoffs.pipeline.plan._inputs_digest() == before
    preset = package / "presets" / "format" / "nvfp4.yaml"
    preset.write_text(preset.read_text().replace("block_size: 16", "block_size: 32"))
    assert tradeoffs.pipeline.plan._inputs_digest() != before
