"""Where the project's directories are: found from the working directory, so a copied workflow works too."""

from __future__ import annotations

import os
from pathlib import Path


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
    return project_root() / "conf"


def results_dir() -> Path:
    return project_root() / "results"
