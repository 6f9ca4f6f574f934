"""The warm worker: a job run through it writes the same result as a fresh process, reuses one server, keeps
its own exit status and log, and runs in its own process where the worker is off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tradeoffs.config import as_dict, load_experiment
from tradeoffs.worker import socket_path


def job(workflow_dir, name: str, config: dict, *extra: str, worker: str = "on") -> subprocess.CompletedProcess:
    out = workflow_dir / "results" / "numerics" / name / "result.json"
    command = [sys.executable, "-m", "tradeoffs.worker", "job", "--id", f"numerics/{name}", "--config"]
    command += [json.dumps(config), "--out", str(out), "--threads", "1", *extra]
    env = {**os.environ, "TRADEOFFS_WORKER": worker}
    return subprocess.run(command, cwd=workflow_dir, capture_output=True, text=True, env=env)


def metrics(workflow_dir, name: str) -> list:
    record = json.loads((workflow_dir / "results" / "numerics" / name / "result.json").read_text())
    return [(m["name"], m["value"], m["labels"]) for m in record["metrics"]]


def test_a_warm_job_matches_a_fresh_process_and_keeps_its_status(workflow_dir):
    config = as_dict(load_experiment("numerics", ["n_values=65536", "format=mxfp4"]))
    warm = job(workflow_dir, "warm", config)
    assert warm.returncode == 0 and "numerics/warm: ok" in warm.stdout, warm.stderr
    server = socket_path(workflow_dir)
    assert server.exists()  # the first job started a server, which stays for the next (a long tmp path too)
    again = job(workflow_dir, "again", config)
    assert again.returncode == 0 and server.exists()
    fresh = job(workflow_dir, "fresh", config, worker="off")
    assert fresh.returncode == 0
    assert metrics(workflow_dir, "warm") == metrics(workflow_dir, "fresh") == metrics(workflow_dir, "again")

    broken = {**config, "n_values": 65537}  # fails validation in the child: its own status and message
    failed = job(workflow_dir, "broken", broken)
    assert failed.returncode != 0 and "row_size=4096 does not divide n_values=65537" in failed.stderr
    assert job(workflow_dir, "after", config).returncode == 0  # the server outlives a failed job
