"""Result records: atomic writes, provenance, statuses, and the tidy table."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from tradeoffs.errors import Unsupported
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.provenance import collect_provenance
from tradeoffs.results import Metric, Outcome, collect, read_result, write_json_atomic, write_table


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"value": 1})

    class Unserialisable:
        def __str__(self):
            raise RuntimeError("interrupted mid-write")

    with pytest.raises(RuntimeError):
        write_json_atomic(path, {"value": 2, "bad": Unserialisable()})
    assert json.loads(path.read_text()) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_killed_writer_never_leaves_a_partial_file(tmp_path):
    """A process killed while writing a large result leaves either no file or the old complete file."""
    path = tmp_path / "result.json"
    write_json_atomic(path, {"generation": 0})
    script = textwrap.dedent(f"""
        import os, sys
        from tradeoffs.results import write_json_atomic
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        while True:
            write_json_atomic({str(path)!r}, {{"generation": 1, "payload": list(range(2_000_000))}})
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    import time

    time.sleep(1.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    content = json.loads(path.read_text())  # must parse: never a torn file
    assert content["generation"] in (0, 1)


def test_provenance_fields_present():
    info = collect_provenance()
    for key in (
        "host",
        "cpu_model",
        "cpu_count",
        "isa_flags",
        "python",
        "packages",
        "git_commit",
        "git_dirty",
        "torch_threads",
        "torch_cpu_capability",
        "gpu",
    ):
        assert key in info, key
    assert info["packages"]["torch"].startswith("2.13")
    assert isinstance(info["isa_flags"], list)


def test_runner_records_every_status(tmp_path, monkeypatch):
    config = load_experiment("numerics", ["n_values=4096", "row_size=64"])
    record = run_experiment("numerics/test-00000000", config, tmp_path / "ok" / "result.json")
    assert record.status == "ok" and {m.name for m in record.metrics} >= {"qsnr_db", "bits_per_element"}
    assert read_result(tmp_path / "ok" / "result.json") == record
    assert record.config["format"]["name"] == "int8" and record.seed == 0

    import tradeoffs.kinds.numerics as numerics

    for exception, status in ((Unsupported("no FP8 units"), "unsupported"), (ZeroDivisionError("boom"), "error")):

        def failing(config, job, exception=exception):
            raise exception

        monkeypatch.setattr(numerics, "KIND", dataclasses.replace(numerics.KIND, run=failing))
        failed = run_experiment("numerics/x-00000000", config, tmp_path / status / "result.json")
        assert failed.status == status and failed.metrics == []
        assert failed.message.endswith(("no FP8 units", "boom"))


def test_tidy_table_has_rows_for_failed_runs(tmp_path):
    from tradeoffs.results import ResultRecord, write_result

    common = dict(
        kind="numerics",
        config={"format": {"name": "int8"}, "seed": 0},
        timings={"wall_s": 1.0},
        provenance={"host": "h", "packages": {"torch": "2.13"}},
        seed=0,
        started="s",
        ended="e",
    )
    write_result(
        tmp_path / "a.json",
        ResultRecord(
            id="numerics/a-1",
            status="ok",
            message="",
            metrics=[Metric("qsnr_db", 20.0, "dB"), Metric("qsnr_db", 18.0, "dB", {"crest_bin": 3})],
            **common,
        ),
    )
    write_result(
        tmp_path / "b.json", ResultRecord(id="numerics/b-2", status="error", message="boom", metrics=[], **common)
    )
    frame = collect([tmp_path / "a.json", tmp_path / "b.json"])
    assert len(frame) == 3
    assert list(frame.columns[:7]) == ["id", "kind", "status", "message", "metric", "value", "unit"]
    assert {"cfg.format.name", "prov.host", "label.crest_bin", "wall_s"} <= set(frame.columns)
    assert frame.loc[frame["status"] == "error", "message"].item() == "boom"
    write_table(frame, tmp_path / "t.parquet", tmp_path / "t.csv")
    assert pd.read_parquet(tmp_path / "t.parquet").shape == frame.shape
    assert Outcome().status == "ok"
