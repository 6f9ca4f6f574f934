"""Configuration: every option in conf/ and the presets validates, and bad input fails early with an actionable
message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT
from tradeoffs.errors import ConfigError
from tradeoffs.kinds import get_kind, kind_names
from tradeoffs.kinds.numerics import NumericsConfig
from tradeoffs.pipeline.config import config_hash, load_experiment, load_suite, to_typed
from tradeoffs.pipeline.config.groups import GROUP_SCHEMAS
from tradeoffs.presets import preset_files, preset_groups


def _options(group: str) -> list[Path]:
    """The option files of a config group: conf/<group>/*.yaml, and the package's presets of a preset group."""
    presets = [Path(str(file)) for file in preset_files(group).values()] if group in preset_groups() else []
    return sorted((ROOT / "conf" / group).glob("*.yaml")) + presets


@pytest.mark.parametrize(
    "group,path",
    [(g, p) for g in GROUP_SCHEMAS for p in _options(g)],
    ids=lambda v: v if isinstance(v, str) else v.stem,
)
def test_every_group_option_validates_against_its_schema(group, path):
    schema = GROUP_SCHEMAS[group]
    raw = OmegaConf.load(path)
    if "defaults" in raw:  # an option composed from other groups (a recipe's formats): compose it in its kind
        values = getattr(load_experiment("train", [f"{group}={path.stem}"]), group)
    else:
        values = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    assert isinstance(values, schema)
    assert values.name == path.stem, f"{path}: name should match the file name"


def test_every_group_has_options():
    for group in GROUP_SCHEMAS:
        assert _options(group), f"conf/{group}/ is empty and {group} is no group of presets"


@pytest.mark.parametrize("kind", kind_names())
def test_primary_config_of_each_kind_composes(kind):
    choose = {"qdq": ["format=mxfp4"], "inference": ["model=gpt-tiny"]}  # left to choose by their primary configs
    assert isinstance(load_experiment(kind, choose.get(kind, [])), get_kind(kind).schema)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["format=int9"], ["format/int9", "Available options in 'format'", "mxfp4", "nvfp4"]),
        (["distribution=cauchy"], ["distribution/cauchy", "gaussian", "student_t3"]),
        (["bogus=1"], ["Key 'bogus' not in 'NumericsConfig'", "valid keys:", "n_values"]),
        (["format.blocksize=16"], ["format.blocksize", "valid keys:", "block_size"]),
        (["n_values=lots"], ["n_values", "could not be converted to Integer"]),
        (["n_values=-1024"], ["n_values: must be > 0, got -1024"]),
        (["row_size=3000"], ["row_size=3000 does not divide n_values=1048576"]),
        (["format=mxfp4", "row_size=48", "n_values=480"], ["block_size=32 does not divide row_size=48"]),
        (["format.scale_rule=nearest"], ["format.scale_rule", "absmax, floor, ceil, quartet"]),
        (["format=mxfp4", "format.scale_rule=absmax"], ["e8m0", "floor or ceil"]),
        (["format.element=fp5"], ["unknown element format 'fp5'", "fp8_e4m3", "eXmY"]),
        (["rotation=givens"], ["rotation", "none, hadamard, random_hadamard"]),
        (["rotation=hadamard", "rotation_size=24"], ["rotation_size=24 must be a power of two"]),
        (["hardware.device=tpu"], ["hardware.device", "cpu, cuda"]),
        (["distribution=student_t3", "distribution.dof=0"], ["distribution.dof: must be > 0"]),
        (["format=fp4_e2m1", "format.saturate=false"], ["saturate=false", "no"]),
    ],
)
def test_bad_numerics_config_is_rejected_with_a_message(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        load_experiment("numerics", overrides)
    for text in expected:
        assert text in str(caught.value), f"{text!r} missing from: {caught.value}"


def test_unknown_kind_and_suite_list_the_choices():
    with pytest.raises(ConfigError, match=r"valid choices: .*numerics"):
        load_experiment("numerix")
    with pytest.raises(ConfigError, match=r"unknown suite 'huge'.*quick.*smoke"):
        load_suite("huge")


def test_suite_with_an_unknown_key_or_kind_fails(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    for item in ("config.yaml", "numerics.yaml", "distribution"):
        source = ROOT / "conf" / item
        target = tmp_path / "conf" / item
        target.symlink_to(source, target_is_directory=source.is_dir())
    (tmp_path / "conf" / "suite").mkdir()
    (tmp_path / "conf" / "suite" / "typo.yaml").write_text("experiments:\n  numerics:\n    sweeps: {}\n")
    (tmp_path / "conf" / "suite" / "alien.yaml").write_text("experiments:\n  alchemy: {}\n")
    (tmp_path / "conf" / "suite" / "ragged.yaml").write_text(
        "experiments:\n  numerics:\n    zip:\n      format: [int8, mxfp4]\n      distribution: [gaussian]\n"
    )
    monkeypatch.setenv("TRADEOFFS_ROOT", str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"sweeps.*valid keys: kind, sweep, zip, source, source_where, fixed, exclude"
    ):
        load_suite("typo")
    with pytest.raises(ConfigError, match=r"alchemy.*valid choices:.*numerics"):
        load_suite("alien")
    with pytest.raises(ConfigError, match=r"zip axes need lists of one length"):
        load_suite("ragged")


def test_json_round_trip_keeps_the_config_and_its_hash():
    config = load_experiment("numerics", ["format=nvfp4", "distribution=spikes"])
    from tradeoffs.identity import plain

    again = to_typed(plain(config))
    assert again == config and config_hash(again) == config_hash(config)


def test_hash_ignores_descriptive_fields_only():
    config = load_experiment("numerics")
    renamed = load_experiment("numerics", ["format.name=renamed", "hardware.source=somewhere"])
    changed = load_experiment("numerics", ["seed=1"])
    assert config_hash(renamed) == config_hash(config)
    assert config_hash(changed) != config_hash(config)
    assert isinstance(config, NumericsConfig)


def test_hydra_app_rejects_bad_input_before_running(workflow_dir):
    result = subprocess.run(
        [sys.executable, "-m", "tradeoffs", "numerics", "n_values=-5"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "n_values: must be > 0" in result.stderr
    assert not (workflow_dir / "results").exists()
