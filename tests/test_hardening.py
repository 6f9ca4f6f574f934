"""Faults and bad input at the pipeline's edges: crafted checkpoints run no code, a full disk is named and
leaves no temporaries, an unreadable result is an error row, failed jobs run by hand exit non-zero, result
files follow the umask, and bad `job`/`figure`/`table` arguments are named."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT
from conftest import TRAIN_TINY as TINY
from tradeoffs.__main__ import main
from tradeoffs.config import as_dict, load_experiment
from tradeoffs.results import Metric, ResultRecord, read_result, write_json_atomic, write_result
from tradeoffs.runner import run_experiment
from tradeoffs.train import train


def _record(experiment_id: str, metrics: int = 1) -> ResultRecord:
    return ResultRecord(
        id=experiment_id,
        kind=experiment_id.split("/")[0],
        status="ok",
        message="",
        config={"seed": 0},
        metrics=[Metric("qsnr_db", float(i), "dB", {"bin": i}) for i in range(metrics)],
        timings={"wall_s": 1.0},
        provenance={"host": "h"},
        seed=0,
        started="s",
        ended="e",
    )


@pytest.fixture
def tiny_disk(tmp_path):
    """mount(path, size): a tmpfs of `size` at `path`, so a write runs out of space for real (needs root)."""
    mounted: list[Path] = []

    def mount(path: Path, size: str, *options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        option = ",".join((f"size={size}", *options))
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", option, "tmpfs", str(path)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=True)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


# --- checkpoints -------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a directory: a stand-in for arbitrary code in a crafted checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_crafted_source_checkpoint_runs_no_code_in_capture(workflow_dir):
    source = workflow_dir / "results/train/crafted/result.json"
    write_result(source, replace(_record("train/crafted"), artifacts=["checkpoint.pt"]))
    marker = workflow_dir / "code-ran"
    torch.save({"step": _Payload(marker), "model": {}}, source.parent / "checkpoint.pt")
    config = load_experiment("capture", ["source_id=train/crafted"])
    out = workflow_dir / "results/capture/crafted/result.json"
    record = run_experiment("capture/crafted", config, out, inputs=(source,))
    assert not marker.exists(), "loading the checkpoint ran code"
    assert record.status == "error" and str(source.parent / "checkpoint.pt") in record.message


def test_a_crafted_checkpoint_runs_no_code_on_resume(tmp_path):
    checkpoint, marker = tmp_path / "checkpoint.pt", tmp_path / "code-ran"
    torch.save({"config_hash": _Payload(marker)}, checkpoint)
    with pytest.raises(Exception) as caught:
        train(load_experiment("train", [*TINY, "steps=2", "eval_interval=2"]), checkpoint)
    assert not marker.exists(), "loading the checkpoint ran code"
    assert str(checkpoint) in str(caught.value)


def test_a_full_disk_names_the_checkpoint_and_leaves_no_temporary(workflow_dir, tiny_disk):
    """The checkpoint (about 1.6 MB) does not fit, the result (tens of kB) does: the run is an error row that
    says where the space ran out, and the half-written checkpoint is gone."""
    results = tiny_disk(workflow_dir / "results", "512k")
    config = load_experiment("train", [*TINY, "steps=2", "eval_interval=2"])
    out = results / "train/full/result.json"
    record = run_experiment("train/full", config, out)
    assert record.status == "error"
    assert f"no space left on {out.parent / 'checkpoint.pt'}" in record.message
    assert read_result(out).status == "error"
    assert _leftovers(results) == [] and not (out.parent / "checkpoint.pt").exists()


def test_a_full_disk_keeps_the_previous_result_and_says_where(tmp_path, tiny_disk):
    disk = tiny_disk(tmp_path / "disk", "64k")
    path = disk / "result.json"
    write_json_atomic(path, {"generation": 0})
    with pytest.raises(OSError, match=f"no space left on {path}"):
        write_json_atomic(path, {"generation": 1, "payload": list(range(100_000))})
    assert json.loads(path.read_text()) == {"generation": 0}
    assert _leftovers(disk) == []


def test_a_full_disk_keeps_the_previous_table(tmp_path, tiny_disk):
    sources = tmp_path / "results"
    small, large = sources / "numerics/small/result.json", sources / "numerics/large/result.json"
    write_result(small, _record("numerics/small"))
    write_result(large, _record("numerics/large", metrics=20_000))
    disk = tiny_disk(tmp_path / "disk", "64k")
    parquet, csv = disk / "results.parquet", disk / "results.csv"
    main(["collect", str(parquet), str(csv), str(small)])
    before = parquet.read_bytes()
    with pytest.raises(SystemExit, match=f"error: no space left on ({parquet}|{csv})"):
        main(["collect", str(parquet), str(csv), str(small), str(large)])
    assert parquet.read_bytes() == before and len(pd.read_csv(csv)) == 1
    assert _leftovers(disk) == []


def test_a_read_only_results_directory_is_a_clear_error(tmp_path, tiny_disk):
    disk = tiny_disk(tmp_path / "results", "1m")
    out = disk / "numerics/ro/result.json"
    out.parent.mkdir(parents=True)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    config = load_experiment("numerics", ["n_values=4096", "row_size=64"])
    arguments = ["job", "--id", "numerics/ro", "--config", json.dumps(as_dict(config)), "--out", str(out)]
    with pytest.raises(SystemExit, match=f"error: cannot write {out}: .*[Rr]ead-only"):
        main(arguments)


# --- collect -----------------------------------------------------------------------------------------------


def test_collect_turns_an_unreadable_result_into_an_error_row_naming_it(tmp_path, caplog):
    good, bad = tmp_path / "numerics/good/result.json", tmp_path / "numerics/bad/result.json"
    write_result(good, _record("numerics/good", metrics=2))
    write_result(bad, _record("numerics/bad"))
    bad.write_bytes(bad.read_bytes()[:100])  # truncated, as by a full disk or a killed copy
    parquet, csv = tmp_path / "results.parquet", tmp_path / "results.csv"
    main(["collect", str(parquet), str(csv), str(good), str(bad)])
    table = pd.read_parquet(parquet)
    assert (table["id"] == "numerics/good").sum() == 2
    (error,) = table[table["id"] == "numerics/bad"].itertuples()
    assert error.status == "error" and error.kind == "numerics" and str(bad) in error.message
    assert str(bad) in caplog.text


# --- job: exit status, bad --config ------------------------------------------------------------------------


def _failing_job(tmp_path: Path, *flags: str) -> tuple[list[str], Path]:
    """A real failure: the corpus has 256 token ids but the model only 64 embeddings."""
    config = load_experiment("train", [*TINY, "model.vocab_size=64", "steps=2", "eval_interval=2"])
    out = tmp_path / "train/vocab/result.json"
    return ["job", "--id", "train/vocab", "--config", json.dumps(as_dict(config)), "--out", str(out), *flags], out


def test_a_failed_job_run_by_hand_exits_non_zero_with_its_message(tmp_path):
    arguments, out = _failing_job(tmp_path)
    with pytest.raises(SystemExit) as caught:
        main(arguments)
    assert caught.value.code not in (0, None)
    assert "train/vocab: error" in str(caught.value) and "model.vocab_size" in str(caught.value)
    assert read_result(out).status == "error"


def test_a_failed_job_under_the_workflow_is_its_result_row(tmp_path):
    arguments, out = _failing_job(tmp_path, "--exit-zero-on-failure")
    main(arguments)
    assert read_result(out).status == "error"


def test_the_workflow_passes_the_flag_that_records_failures():
    namespace: dict = {}
    exec((ROOT / "workflow/rules/common.smk").read_text(), namespace)  # plain Python: functions and strings
    assert "--exit-zero-on-failure" in shlex.split(namespace["JOB_COMMAND"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"kind": "numerics",', "--config: not valid JSON"),
        ("{}", "--config: no 'kind' key; valid kinds: .*numerics"),
        ('["numerics"]', "--config: expected a JSON object .* got list"),
    ],
)
def test_job_names_a_bad_config_argument(tmp_path, text, expected):
    out = tmp_path / "numerics/x/result.json"
    with pytest.raises(SystemExit, match=f"error: {expected}"):
        main(["job", "--id", "numerics/x", "--config", text, "--out", str(out)])
    assert not out.parent.exists()


# --- figure / table inputs ---------------------------------------------------------------------------------


def test_figure_and_table_name_a_missing_results_table(tmp_path):
    missing = tmp_path / "results.parquet"
    for command, name in (("figure", "train_loss"), ("table", "train_recipes")):
        with pytest.raises(SystemExit, match=f"error: results table {missing} not found"):
            main([command, name, str(missing), str(tmp_path / "out")])
    assert list(tmp_path.iterdir()) == []


def test_figure_and_table_name_a_missing_reference_set(tmp_path):
    table = tmp_path / "results.parquet"
    pd.DataFrame({"id": ["x"], "kind": ["bench"], "status": ["ok"]}).to_parquet(table)
    missing = tmp_path / "reference/h100.parquet"
    for command, name in (("figure", "bench_gemm"), ("table", "bench_gemm")):
        with pytest.raises(SystemExit, match=f"error: --reference: reference set {missing} not found"):
            main([command, name, str(table), str(tmp_path / "out"), "--reference", str(missing)])


# --- file modes --------------------------------------------------------------------------------------------


def test_result_files_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_result(tmp_path / "result.json", _record("numerics/mode"))
        main(["collect", str(tmp_path / "t.parquet"), str(tmp_path / "t.csv"), str(tmp_path / "result.json")])
    finally:
        os.umask(previous)
    for name in ("result.json", "t.parquet", "t.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
