"""Shared fixtures: a throwaway copy of the workflow (Snakefile, conf/, workflow/) to run Snakemake in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A training config small enough for unit tests (gpt-tiny, 4 x 32 tokens per batch, eager quantizers).
TRAIN_TINY = ["model=gpt-tiny", "model.context_length=32", "batch_size=4", "eval_windows=4", "compile_quant=false"]

# The longest test files (seconds on a quiet 2-core machine, beside the other worker's tests), handed to the
# xdist workers first so that the short ones fill in around them instead of one worker finishing a long file alone
# at the end; the Makefile runs pytest with --no-loadscope-reorder so that xdist keeps this order.
LONGEST_FILES_FIRST = (
    "test_slurm.py",  # 200 s
    "test_readme_commands.py",  # 100 s
    "test_workflow.py",  # 130 s
    "test_scaling_fit.py",  # 55 s
    "test_plan.py",  # 45 s
    "test_distributed_memory.py",  # 30 s
)

TRAIN_ID = "train/tiny-00000000"  # the tiny trained model the quant tests quantize
QUANT_SMALL = ["eval_tokens=1024", "calibration_samples=4", f"source_id={TRAIN_ID}"]


def pytest_collection_modifyitems(config, items):
    """Move the longest test files to the front, keeping the order of the tests inside each file."""
    rank = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def train_tiny_source(root: Path):
    """Train the tiny model (6 steps) into `root`'s results as TRAIN_ID, as a quant study's source: its config
    and the path of its result.json. Run with `root` as the working directory."""
    from tradeoffs.pipeline.config import load_experiment
    from tradeoffs.pipeline.runner import run_experiment

    train = load_experiment("train", [*TRAIN_TINY, "study=train", "steps=6", "eval_interval=6"])
    source = root / f"results/{TRAIN_ID}/result.json"
    assert run_experiment(TRAIN_ID, train, source, job_threads=1).status == "ok"
    return train, source


def copy_workflow(target: Path) -> Path:
    """Copy what a workflow run needs into `target` (results and reports start empty)."""
    for name in ("Snakefile", "conf", "workflow", "environment.yml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def workflow_dir(tmp_path, monkeypatch) -> Path:
    """A copy of the workflow in a temporary directory, which is also the working directory."""
    copy_workflow(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRADEOFFS_ROOT", raising=False)
    return tmp_path
