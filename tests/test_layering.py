"""Dependencies point one way: the library (formats, numerics, models, data, train, quant, evaluate, bench, fit,
nondeterminism) imports nothing of the pipeline (Hydra, OmegaConf, Snakemake, the config composer, planner,
results, runner, kinds, report), so an outside user calls it from plain Python."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tradeoffs"
LIBRARY = ("formats", "numerics", "models", "data", "train", "quant", "evaluate", "bench", "fit", "nondeterminism")
SHARED = ("hardware", "identity", "errors", "paths")  # plain modules the library and the pipeline both use
PIPELINE = (
    "hydra",
    "omegaconf",
    "snakemake",
    *(f"tradeoffs.{m}" for m in ("config", "plan", "results", "runner", "kinds", "report", "resources")),
)


def _library_files() -> list[Path]:
    files = []
    for name in (*LIBRARY, *SHARED):
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    return [f for f in files if f.is_file()]


def _imports(path: Path) -> list[str]:
    """Every module an import statement of the file names, at any depth (lazy imports inside functions too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _is_pipeline(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PIPELINE)


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_modules_import_nothing_of_the_pipeline(path):
    offending = [module for module in _imports(path) if _is_pipeline(module)]
    assert not offending, f"{path.relative_to(PACKAGE)} imports {offending}"


def test_the_check_sees_a_pipeline_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from tradeoffs.config import compose\n    import omegaconf\n")
    assert [m for m in _imports(sample) if _is_pipeline(m)] == ["tradeoffs.config", "omegaconf"]


def test_importing_the_library_loads_no_pipeline_module():
    present = [name for name in LIBRARY if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()]
    code = (
        "import sys, importlib\n"
        f"for name in {present!r}: importlib.import_module('tradeoffs.' + name)\n"
        f"print(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {PIPELINE!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
