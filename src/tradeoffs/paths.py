"""Where the project's directories are: found from the working directory, so a copied workflow works too. The
pipeline's alone: the library (tradeoffs.formats, .bench, .data, ...) never looks for the project; use_project
points it at the project's additions."""

from __future__ import annotations

import os
from pathlib import Path

from tradeoffs.errors import ConfigError


def project_root() -> Path:
    """The directory holding conf/: $TRADEOFFS_ROOT, else the nearest parent of the cwd with conf/."""
    if env := os.environ.get("TRADEOFFS_ROOT"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "conf" / "config.yaml").is_file():
            return candidate
    source_checkout = Path(__file__).resolve().parents[2]
    if (source_checkout / "conf" / "config.yaml").is_file():
        return source_checkout
    raise FileNotFoundError(
        f"no conf/config.yaml in {here} or its parents; run from the project directory or set TRADEOFFS_ROOT"
    )


def conf_dir() -> Path:
    """The project's conf/."""
    return project_root() / "conf"


def use_project() -> None:
    """Point the library at the project, for this process and those it starts: named formats are looked up in
    its conf/format/ before the package's presets ($TRADEOFFS_FORMATS), and datasets are cached in its
    data/cache/ unless $TRADEOFFS_DATA_CACHE is already set."""
    root = project_root()
    os.environ["TRADEOFFS_FORMATS"] = str(root / "conf" / "format")
    os.environ.setdefault("TRADEOFFS_DATA_CACHE", str(root / "data" / "cache"))


def results_dir() -> Path:
    return project_root() / "results"


def suite_file(name: str) -> Path:
    """conf/suite/<name>.yaml for a suite named by its file's stem. Any other name (a path, `../`, a typo) raises
    ConfigError listing the suites, so a suite and the plan cache named after it stay inside the project."""
    directory = conf_dir() / "suite"
    names = sorted(path.stem for path in directory.glob("*.yaml"))
    if name not in names:
        raise ConfigError(
            f"unknown suite '{name}'; valid choices: {', '.join(names)} (a suite is named by its file in {directory}, "
            "without .yaml; copy another suite there to use it)"
        )
    return directory / f"{name}.yaml"
