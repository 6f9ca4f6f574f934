"""The workstation suite (conf/suite/workstation.yaml) as planned, without running it: its ladder is laid out so
that the scaling fits can identify both terms of the law and Chinchilla's Approach 2 has iso-FLOP groups, its
low-precision sub-grid identifies each recipe's multipliers, and it holds every study of the quick suite."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import yaml

from conftest import ROOT, copy_workflow
from tradeoffs.fit.isoflop import compute_groups
from tradeoffs.models import ModelConfig, count_parameters
from tradeoffs.pipeline.plan import build_plan

COMPUTE_OPTIMAL_RATIO = 20  # Hoffmann et al.: about 20 training tokens per parameter at the compute optimum
ISO_FLOP_TOLERANCE = 1.25  # the scaling_fit kind's default grouping of runs by compute


def _planned(tmp_path_factory, suite_name: str, keep) -> list:
    """The experiments of the suite's studies that `keep(study, kind)` selects, planned in a copy of the workflow
    (composing every study of the workstation suite takes minutes on a loaded 2-core machine)."""
    root = copy_workflow(tmp_path_factory.mktemp(suite_name))
    path = root / "conf" / "suite" / f"{suite_name}.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["experiments"] = {k: v for k, v in suite["experiments"].items() if keep(k, (v or {}).get("kind", k))}
    path.write_text(yaml.safe_dump(suite))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("TRADEOFFS_ROOT", raising=False)
        return build_plan(suite_name).experiments


@pytest.fixture(scope="module")
def training(tmp_path_factory) -> list:
    """The workstation suite's training runs (every study of the train kind) and the ladder's fit."""
    return _planned(tmp_path_factory, "workstation", lambda study, kind: kind in ("train", "scaling_fit"))


@pytest.fixture(scope="module")
def ladder(training) -> list[dict]:
    """The planned ladder runs with their N, D and C = 6ND."""
    (fit,) = [e for e in training if e.kind == "scaling_fit"]
    runs = [e for e in training if e.config["study"] == "ladder"]
    assert fit.inputs == tuple(e.result_path for e in runs)
    return [_run(e.config) for e in runs]


def _run(config: dict) -> dict:
    model = ModelConfig(**config["model"])
    tokens = config["steps"] * config["batch_size"] * model.context_length
    n = count_parameters(model).non_embedding
    return {"n": n, "d_model": model.d_model, "tokens": tokens, "compute": 6 * n * tokens, **config}


def test_the_ladder_identifies_both_terms_and_has_iso_flop_groups(ladder):
    runs = ladder
    fp32 = [r for r in runs if r["recipe"]["name"] == "fp32" and r["seed"] == 0]
    sizes = sorted({r["n"] for r in fp32})
    assert len({r["d_model"] for r in fp32}) >= 4  # at least 4 widths
    assert math.log10(sizes[-1] / sizes[0]) >= 1.3  # N spans at least 1.3 decades
    budgets = defaultdict(set)
    for r in fp32:
        budgets[r["n"]].add(r["tokens"])
    assert min(len(b) for b in budgets.values()) >= 4  # at least 4 token budgets per size
    ratios = [r["tokens"] / r["n"] for r in fp32]
    assert min(ratios) < COMPUTE_OPTIMAL_RATIO < max(ratios)
    # Approach 2: compute levels shared across sizes, at least 3 groups of 3 or more sizes over a decade of C
    groups = compute_groups([r["compute"] for r in fp32], ISO_FLOP_TOLERANCE)
    members = defaultdict(set)
    for r, g in zip(fp32, groups, strict=True):
        members[g].add(r["n"])
    rich = [g for g, n in members.items() if len(n) >= 3]
    assert len(rich) >= 3
    level = {g: min(r["compute"] for r, h in zip(fp32, groups, strict=True) if h == g) for g in rich}
    assert math.log10(max(level.values()) / min(level.values())) >= 1
    # a second seed at both ends of the grid (the smallest and the largest size)
    seeded = {r["n"] for r in runs if r["seed"] == 1}
    assert {sizes[0], sizes[-1]} <= seeded


def test_each_low_precision_recipe_spans_a_decade_of_n_and_of_d(ladder):
    runs = ladder
    fp32 = {(r["n"], r["tokens"]) for r in runs if r["recipe"]["name"] == "fp32"}
    for recipe in ("fp8", "mxfp4", "nvfp4"):
        own = [r for r in runs if r["recipe"]["name"] == recipe]
        n, d = {r["n"] for r in own}, {r["tokens"] for r in own}
        assert len(n) >= 3 and math.log10(max(n) / min(n)) >= 1, recipe  # eff_N is identified on its own runs
        assert len(d) >= 3 and math.log10(max(d) / min(d)) >= 1, recipe  # and eff_D
        assert {(r["n"], r["tokens"]) for r in own} <= fp32  # a sub-grid: every point has its fp32 run


def test_the_workstation_suite_holds_every_quick_study_with_sane_wall_times(training, tmp_path_factory):
    studies = {name: ROOT / "conf" / "suite" / f"{name}.yaml" for name in ("quick", "workstation")}
    quick, workstation = (set(yaml.safe_load(path.read_text())["experiments"]) for path in studies.values())
    assert quick <= workstation  # every product and claim of the quick suite exists
    train = [e for e in training if e.kind == "train"]
    assert all(e.job.threads == 1 and e.job.gpus == 0 for e in train)
    assert all(10 <= e.job.runtime <= 180 for e in train)  # minutes: ptq_base (6 CPU minutes measured) the longest
    (base,) = [e.config for e in train if e.config["study"] == "ptq_base"]
    (quick_base,) = [e.config for e in _planned(tmp_path_factory, "quick", lambda study, kind: study == "ptq_base")]
    parameters = [count_parameters(ModelConfig(**c["model"])).non_embedding for c in (base, quick_base)]
    assert parameters[0] >= 4 * parameters[1]
