"""Dependencies point one way. Each unit of the package (a top-level subpackage or module of tradeoffs) sits in
one layer, and imports only from the layers its layer may import (itself included): the library (formats,
models, training, quantization, benchmarks, fits) calls nothing above it, so an outside user runs it from plain
Python; the experiment kinds build on it; the report reads results; the pipeline (configs, planner, runner,
workflow) drives them all; the command line calls on any of them. Anything not allowed fails, and neither units
nor the modules inside them import each other in a cycle.

An import is any `import` or `from ... import` (lazy ones inside functions, relative ones), an
`importlib.import_module` of a literal or f-string name, or a module named in a string constant (what a table
hands to import_module, e.g. a report product's "tradeoffs.report.numerics:qsnr_figure").
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tradeoffs"

# The units of each layer: a subpackage or module of tradeoffs by name, "__init__" the package's own module.
LAYERS: dict[str, tuple[str, ...]] = {
    # plain modules that everything may use: errors, config identity, hardware, paths, atomic writes, provenance
    "base": ("__init__", "errors", "identity", "hardware", "paths", "atomic", "provenance"),
    "library": (
        "formats",
        "numerics",
        "models",
        "data",
        "train",
        "quant",
        "evaluate",
        "bench",
        "fit",
        "nondeterminism",
        "presets",  # the named formats, hardware and bench settings the library ships
    ),
    # what a kind returns (results: Outcome, Metric, the result records) and asks a scheduler for (resources)
    "records": ("results", "resources"),
    "kinds": ("kinds",),
    "report": ("report",),
    "pipeline": ("pipeline",),
    # `python -m tradeoffs` and its warm worker (`python -m tradeoffs.worker`), which runs that command line
    "command line": ("__main__", "worker"),
}
# The layers whose units each layer's units may import, its own included.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "base": ("base",),
    "library": ("base", "library"),
    "records": ("base", "records"),
    "kinds": ("base", "library", "records", "kinds"),
    "report": ("base", "library", "records", "kinds", "report"),
    "pipeline": ("base", "library", "records", "kinds", "report", "pipeline"),
    "command line": ("base", "library", "records", "kinds", "report", "pipeline", "command line"),
}
# The pipeline's frameworks, which these layers never import.
FRAMEWORKS = ("hydra", "omegaconf", "snakemake")
WITHOUT_FRAMEWORKS = ("base", "library", "records")

LAYER_OF = {unit: layer for layer, units in LAYERS.items() for unit in units}
_MODULE_NAME = re.compile(r"^tradeoffs(?:\.\w+)*(?::\w+)?$")


def package_units(package: Path = PACKAGE) -> set[str]:
    """The units on disk: every subpackage (a folder with __init__.py) and module of the package."""
    packages = {p.parent.name for p in package.glob("*/__init__.py")}
    return packages | {p.stem for p in package.glob("*.py")}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dynamic_name(node: ast.expr, module: str) -> str | None:
    """A literal import_module argument: a string, or the literal start of an f-string up to its last dot
    (`f"tradeoffs.kinds.{name}"`, `f"{__name__}.{m}"` read as this module's name)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    prefix = ""
    for value in node.values:
        if isinstance(value, ast.Constant):
            prefix += value.value
        elif isinstance(value.value, ast.Name) and value.value.id in ("__name__", "__package__"):
            prefix += module
        else:
            break
    return prefix.rpartition(".")[0] or None


def imported_modules(path: Path, package: Path = PACKAGE) -> list[str]:
    """Every module name the file imports, dotted (`from m import a, b` gives m, m.a and m.b: a and b may be
    modules or attributes of m, units_of reads either; `from tradeoffs import x` gives tradeoffs.x only)."""
    module = _module_name(path, package)
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names += [*([base] if base != "tradeoffs" else []), *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call) and node.args:
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if function in ("import_module", "__import__") and (name := _dynamic_name(node.args[0], module)):
                names.append(name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.match(node.value):
            names.append(node.value.split(":")[0])
    return names


def units_of(names: list[str], units: set[str]) -> set[str]:
    """The package's units that the dotted names reach (`tradeoffs.formats.spec` is formats; `tradeoffs` alone, or
    an attribute of it such as `tradeoffs.__version__`, is __init__)."""
    reached = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "tradeoffs":
            reached.add(parts[1] if len(parts) > 1 and parts[1] in units else "__init__")
    return reached


def _unit_of_file(path: Path, package: Path) -> str:
    first = path.relative_to(package).parts[0]
    return first.removesuffix(".py")


def _files(package: Path = PACKAGE) -> list[Path]:
    return sorted(package.rglob("*.py"))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """unit -> the other units it imports."""
    units = package_units(package)
    graph: dict[str, set[str]] = {unit: set() for unit in units}
    for path in _files(package):
        unit = _unit_of_file(path, package)
        graph[unit] |= units_of(imported_modules(path, package), units) - {unit}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph as a path [a, b, ..., a], or [] when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return [*path[path.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_every_unit_of_the_package_is_in_exactly_one_layer():
    listed = [unit for units in LAYERS.values() for unit in units]
    assert len(listed) == len(set(listed)), "a unit is listed in two layers"
    on_disk = package_units()
    assert not on_disk - set(listed), f"units in no layer (add them to LAYERS): {sorted(on_disk - set(listed))}"
    assert set(MAY_IMPORT) == set(LAYERS) and all(layer in MAY_IMPORT[layer] for layer in LAYERS)


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_what_its_layer_may(path):
    unit = _unit_of_file(path, PACKAGE)
    layer = LAYER_OF[unit]
    names = imported_modules(path)
    not_allowed = sorted(
        f"{other} ({LAYER_OF.get(other, 'no layer')})"
        for other in units_of(names, package_units())
        if LAYER_OF.get(other) not in MAY_IMPORT[layer]
    )
    assert not not_allowed, f"{path.relative_to(PACKAGE)} ({layer}) imports {not_allowed}"
    if layer in WITHOUT_FRAMEWORKS:
        frameworks = sorted({n for n in names if n.split(".")[0] in FRAMEWORKS})
        assert not frameworks, f"{path.relative_to(PACKAGE)} ({layer}) imports the pipeline's {frameworks}"


def test_units_import_each_other_without_a_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle between units: " + " -> ".join(cycle)


def module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the other modules of the package it imports (a name that is an attribute counts as its module;
    `from tradeoffs.x import y` reaches the package tradeoffs.x, whose __init__ runs first)."""
    modules = {_module_name(path, package): path for path in _files(package)}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        reached = set()
        for name in imported_modules(path, package):
            name = name.split(":")[0]
            if name in modules or (name := name.rpartition(".")[0]) in modules:
                reached.add(name)
        graph[module] = reached - {module}
    return graph


def test_modules_import_each_other_without_a_cycle():
    cycle = find_cycle(module_graph())
    assert not cycle, "import cycle between modules: " + " -> ".join(cycle)


def test_the_checks_see_every_form_of_import(tmp_path):
    package = tmp_path / "tradeoffs"
    for unit in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"):
        (package / unit).mkdir(parents=True)
        (package / unit / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "loose.py").write_text("")
    sample = package / "alpha" / "sample.py"
    sample.write_text(
        "import importlib\n"
        "def f(name):\n"
        "    from tradeoffs.beta import thing\n"
        "    import omegaconf\n"
        "    importlib.import_module(f'tradeoffs.gamma.{name}')\n"
        "    importlib.import_module('tradeoffs.loose')\n"
        "from .. import delta\n"
        "from . import sibling\n"
        "TARGET = 'tradeoffs.epsilon.module:function'\n"
    )
    (package / "zeta" / "__init__.py").write_text("import importlib\nimportlib.import_module(f'{__name__}.inner')\n")
    names = imported_modules(sample, package)
    assert "omegaconf" in names
    units = package_units(package)
    assert units_of(names, units) == {"alpha", "beta", "gamma", "delta", "epsilon", "loose"}
    assert units_of(imported_modules(package / "zeta" / "__init__.py", package), units) == {"zeta"}
    assert import_graph(package)["alpha"] == {"beta", "gamma", "delta", "epsilon", "loose"}
    reached = module_graph(package)["tradeoffs.alpha.sample"]
    assert reached == {f"tradeoffs.{m}" for m in ("alpha", "beta", "gamma", "delta", "epsilon", "loose")}


def test_the_cycle_check_finds_a_cycle_through_several_units():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def _loaded_after_import(layers: tuple[str, ...]) -> list[str]:
    """The modules a fresh interpreter has loaded after importing every module of the units of `layers`."""
    units = {unit for layer in layers for unit in LAYERS[layer]}
    names = [
        _module_name(path, PACKAGE)
        for path in _files()
        if _unit_of_file(path, PACKAGE) in units and path.stem != "__main__"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("layers", [("base", "library", "records"), ("kinds",)], ids=lambda ls: "+".join(ls))
def test_importing_a_layer_loads_only_what_it_may_import(layers):
    allowed = {layer for own in layers for layer in MAY_IMPORT[own]}
    loaded = _loaded_after_import(layers)
    units = sorted({m.split(".")[1] for m in loaded if m.startswith("tradeoffs.")})
    assert not [u for u in units if LAYER_OF.get(u) not in allowed], f"loaded {units}"
    if set(layers) <= set(WITHOUT_FRAMEWORKS):
        assert not [m for m in loaded if m.split(".")[0] in FRAMEWORKS]
