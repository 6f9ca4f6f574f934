"""Every command of the README's "Everyday commands" block runs as written: each is run in file order in one
copy of the workflow, which earlier commands fill (a run by hand, a trained model), so that the commands that
read a finished run's outputs find them. A long command runs with smaller sizes (RUN_AS: the same command
with the overrides that shrink it); a command that launches a whole suite is skipped, with the reason
(SKIPPED). A README command in neither table runs exactly as written; an entry of either table that is not a
README command fails the test."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, copy_workflow

BIN = Path(sys.executable).parent
SKIPPED = {
    "snakemake --cores 2 --config suite=smoke": "runs the whole smoke suite (minutes); tests/test_workflow.py runs it",
    "snakemake --cores 2 --forcerun collect": "reruns collect and every report product of the default suite, so "
    "in a fresh copy the whole quick suite; tests/test_workflow.py runs collect and the products of a suite",
    "snakemake --report reports/report.html": "needs a finished run of a whole suite; tests/test_workflow.py builds "
    "the report of a real smoke run",
}
RUN_AS = {
    "snakemake -n": "snakemake -n --config suite=smoke",  # the default suite's plan is minutes on a loaded machine
    "tradeoffs plan --suite quick": "tradeoffs plan --suite smoke",
    "python -m tradeoffs numerics format=mxfp4 distribution=student_t3 rotation=hadamard": "python -m tradeoffs "
    "numerics format=mxfp4 distribution=student_t3 rotation=hadamard n_values=65536",
    "python -m tradeoffs train model=gpt-60k recipe=mxfp8 steps=300": "python -m tradeoffs train model=gpt-60k "
    "recipe=mxfp8 steps=4 batch_size=4 model.context_length=32 eval_interval=4 eval_windows=2 compile_quant=false",
    "python -m tradeoffs bench gemm": "python -m tradeoffs bench gemm --repeats 1 --sizes 64 --min-time 0.01 "
    "--max-time 0.1 --warmup 1 --min-runs 2",
    "python -m tradeoffs bench qdq --log2-elements 22": "python -m tradeoffs bench qdq --log2-elements 12 "
    "--repeats 1 --formats mxfp4 --min-time 0.01 --max-time 0.1 --warmup 1 --min-runs 2 --no-compiled",
    "python -m tradeoffs bench train": "python -m tradeoffs bench train --model gpt-tiny --context 32 --batch 4 "
    "--steps 2 --warmup 1 --rounds 1 --recipes fp32 --eager",
    "python -m tradeoffs bench gptq": "python -m tradeoffs bench gptq --size 128 --model none",
    "python -m tradeoffs gemm dtype=bf16 'shapes=[[2048,2048,2048]]'": "python -m tradeoffs gemm dtype=bf16 "
    "'shapes=[[64,64,64]]' bench.min_time_s=0.01",
    # the lint recipe without re-running the install it depends on; the smoke suite's plan, not the default's
    "make lint": "make -o .venv/.installed lint SUITE=smoke",
}


def readme_commands() -> list[str]:
    """The commands of the README's "Everyday commands" block, comments removed, in order."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Everyday commands", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _argv(command: str, workspace: Path) -> list[str]:
    """The command's words with the project's programs (this interpreter, the venv's scripts), and the trained
    run's id in place of the README's <id>."""
    if "<id>" in command:
        (run,) = (workspace / "results" / "train").iterdir()
        command = command.replace("<id>", run.name)
    words = shlex.split(command)
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    if words[0] in ("tradeoffs", "snakemake"):
        return [str(BIN / words[0]), *words[1:]]
    return words


def _prepare(command: str, workspace: Path) -> None:
    """What a command reads that no earlier command of the block makes: an experiment run by Snakemake (its
    benchmark.tsv), the tidy table of the runs made so far, two tables A and B, two runs' directories RUN_A and
    RUN_B, a table of runs to fit."""
    words = command.split()
    if words[3:5] == ["bench", "suite"]:
        plan = subprocess.run(
            [str(BIN / "tradeoffs"), "plan", "--suite", "smoke"], cwd=workspace, capture_output=True, text=True
        )
        lmul = next(line for line in plan.stdout.splitlines() if line.startswith("lmul/"))
        snakemake = [str(BIN / "snakemake"), f"results/{lmul}/result.json", "--cores", "1", "--config", "suite=smoke"]
        subprocess.run(snakemake, cwd=workspace, check=True, capture_output=True)
    if "results/results.parquet" in words or "A.parquet" in words or "RUN_A" in words:
        results = sorted(str(p) for p in (workspace / "results").glob("*/*/result.json"))
        table = workspace / "results" / "results.parquet"
        subprocess.run(
            [sys.executable, "-m", "tradeoffs", "collect", str(table), str(table.with_suffix(".csv")), *results],
            cwd=workspace,
            check=True,
        )
        for name in ("A.parquet", "B.parquet"):
            shutil.copy(table, workspace / name)
        for run in ("RUN_A", "RUN_B"):
            (workspace / run / "results").mkdir(parents=True, exist_ok=True)
            shutil.copy(table, workspace / run / "results" / "results.parquet")
    if "runs.csv" in words:
        sizes, tokens = [n for n in (1e6, 3e6, 1e7, 3e7) for _ in range(3)], [2e7, 6e7, 2e8] * 4
        loss = [1.7 + 400 / n**0.34 + 410 / d**0.28 for n, d in zip(sizes, tokens, strict=True)]
        pd.DataFrame({"n_params": sizes, "tokens": tokens, "loss": loss}).to_csv(workspace / "runs.csv", index=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One copy of the workflow that the commands run in, one after another."""
    return copy_workflow(tmp_path_factory.mktemp("readme"))


def test_every_table_entry_is_a_readme_command():
    commands = readme_commands()
    assert "python -m tradeoffs compare RUN_A RUN_B" in commands
    assert set(SKIPPED) <= set(commands) and set(RUN_AS) <= set(commands)
    assert not set(SKIPPED) & set(RUN_AS)


@pytest.mark.slow  # a Snakemake job and the lint's plan of the default suite among them
@pytest.mark.timeout(900)
@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, workspace):
    if command in SKIPPED:
        pytest.skip(SKIPPED[command])
    command = RUN_AS.get(command, command)
    _prepare(command, workspace)
    cwd = ROOT if command.startswith("make ") else workspace
    env = {k: v for k, v in os.environ.items() if k != "TRADEOFFS_ROOT"}
    done = subprocess.run(_argv(command, workspace), cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
