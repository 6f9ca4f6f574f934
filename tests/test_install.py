"""The install files agree: environment.yml pins exactly requirements.lock, which satisfies pyproject."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from conftest import ROOT


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def test_environment_yml_pins_the_lock():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    conda_pins = {}
    for entry in pip_section:
        if entry.startswith("-e"):
            continue
        name, version = entry.split("==")
        conda_pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    assert conda_pins == _lock()
    assert "python=3.11" in environment["dependencies"]


def test_lock_satisfies_pyproject_and_pins_the_required_versions():
    pins = _lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    for text in requirements:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name.lower())
        assert name in pins, f"{name} is required by pyproject.toml but not pinned in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} violates {text}"
    assert pins["torch"] == "2.13.0"
    assert pins["snakemake"].startswith("9.")
    assert pins["hydra-core"].startswith("1.3.")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci
    assert "make test" in readme and "make run" in readme
