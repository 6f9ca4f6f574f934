"""The warm worker: a job run through it writes the same result as a fresh process, reuses one server, keeps
its own exit status and log, and runs in its own process where the worker is off."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tradeoffs.identity import plain
from tradeoffs.pipeline.config import load_experiment
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
    config = plain(load_experiment("numerics", ["n_values=65536", "format=mxfp4"]))
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


def test_a_job_under_other_torch_settings_gets_a_server_of_its_own(workflow_dir, monkeypatch):
    """torch reads ATEN_CPU_CAPABILITY once, as the server loads it: a job that asks for AVX2 kernels gets a
    server started under that setting and runs them (its provenance says so), not a running server's."""
    config = plain(load_experiment("numerics", ["n_values=4096", "format=int8"]))
    assert job(workflow_dir, "default", config).returncode == 0
    default_server = socket_path(workflow_dir)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    avx2 = job(workflow_dir, "avx2", config)
    assert avx2.returncode == 0, avx2.stderr
    assert socket_path(workflow_dir) != default_server and socket_path(workflow_dir).exists()
    record = json.loads((workflow_dir / "results" / "numerics" / "avx2" / "result.json").read_text())
    assert record["provenance"]["torch_cpu_capability"] == "AVX2"


# ------------------------------------------------------------------ another local user at the rendezvous
OTHER_UID = 65534  # nobody: the other local user of a shared login node

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="playing a second local user needs root (setuid)")


@pytest.fixture
def shared_tmp(monkeypatch):
    """A world-writable temporary directory (as /tmp is), reachable by the other user, as the jobs' TMPDIR."""
    shared = Path(tempfile.mkdtemp(prefix="tradeoffs-shared-", dir="/tmp"))
    shared.chmod(0o1777)
    monkeypatch.setenv("TMPDIR", str(shared))
    yield shared
    shutil.rmtree(shared, ignore_errors=True)


def as_other_user(action) -> int:
    """Run `action()` in a forked process of uid OTHER_UID; returns its pid (the caller waits or kills it)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            action()
        finally:
            os._exit(0)
    return pid


def listen_and_record(path: Path, record: Path, *, bind_first: bool = False):
    """The impostor: listen at `path`, write whatever a client sends to `record`, answer success."""

    def impostor():
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        os.chmod(path, 0o777)
        listener.listen(4)
        listener.settimeout(60)
        connection, _ = listener.accept()
        record.write_bytes(connection.recv(1 << 20))
        data = json.dumps({"status": 0}).encode()
        connection.sendall(len(data).to_bytes(8, "big") + data)

    return impostor


def run_numerics_job(workflow_dir, name: str) -> subprocess.CompletedProcess:
    config = plain(load_experiment("numerics", ["n_values=4096", "format=int8"]))
    return job(workflow_dir, name, config)


@needs_root
def test_a_rendezvous_directory_made_by_another_user_is_refused(workflow_dir, shared_tmp):
    """Another user creates the directory first (mode 0777) and listens on the socket: the job never talks to
    it, runs in its own process with a warning, and writes its own result."""
    server = shared_tmp / f"tradeoffs-{os.getuid()}" / socket_path(workflow_dir).name
    record = shared_tmp / "stolen"
    ready = shared_tmp / "ready"

    def take_over():
        server.parent.mkdir()
        server.parent.chmod(0o777)
        impostor = listen_and_record(server, record)
        ready.touch()
        impostor()

    pid = as_other_user(take_over)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.parent.stat().st_uid == OTHER_UID
        done = run_numerics_job(workflow_dir, "refused_dir")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done.returncode == 0, done.stderr
    assert "warning: warm worker not used" in done.stderr and f"owned by uid {OTHER_UID}" in done.stderr
    assert not record.exists()  # nothing of the job (argv, environment, handles) reached the other user
    assert metrics(workflow_dir, "refused_dir")


@needs_root
def test_a_listener_of_another_uid_in_a_private_directory_is_refused(workflow_dir, shared_tmp):
    """Even inside a directory of the right owner and mode, a socket whose listener runs as another uid (the
    kernel's peer credentials) is refused."""
    server = shared_tmp / f"tradeoffs-{os.getuid()}" / socket_path(workflow_dir).name
    server.parent.mkdir(mode=0o700)
    record = shared_tmp / "stolen"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(server))  # bound by this uid, so the file is this user's; listening as the other

    def impostor():
        listener.listen(4)
        listener.settimeout(60)
        connection, _ = listener.accept()
        record.write_bytes(connection.recv(1 << 20))

    pid = as_other_user(impostor)
    listener.close()
    try:
        time.sleep(0.5)
        done = run_numerics_job(workflow_dir, "refused_peer")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done.returncode == 0, done.stderr
    assert f"runs as uid {OTHER_UID}, not as this user" in done.stderr
    assert not record.exists() or record.read_bytes() == b""
    assert metrics(workflow_dir, "refused_peer")


def test_a_file_in_place_of_the_directory_falls_back_with_a_warning(workflow_dir, shared_tmp):
    (shared_tmp / f"tradeoffs-{os.getuid()}").write_text("not a directory")
    done = run_numerics_job(workflow_dir, "file_in_place")
    assert done.returncode == 0, done.stderr
    assert "warning: warm worker not used" in done.stderr and "is not a directory" in done.stderr
    assert metrics(workflow_dir, "file_in_place")


def test_a_loose_directory_mode_is_refused(workflow_dir, shared_tmp):
    (shared_tmp / f"tradeoffs-{os.getuid()}").mkdir(mode=0o755)
    done = run_numerics_job(workflow_dir, "loose_mode")
    assert done.returncode == 0 and "not 0700" in done.stderr, done.stderr


def test_a_failing_child_logs_its_full_traceback(tmp_path):
    """A job that fails inside the worker's child (here its working directory is gone) leaves the whole
    traceback in the job's own log, as a fresh process would, and its client gets a failed status."""
    from tradeoffs import worker

    client, server = socket.socketpair()
    log = open(tmp_path / "log.txt", "w")  # noqa: SIM115 -- handed to the child as its stdout and stderr
    worker._send(client, {"argv": ["plan"], "cwd": str(tmp_path / "removed"), "env": {}})
    socket.send_fds(client, [b"fds"], [log.fileno(), log.fileno()])
    pid = os.fork()
    if pid == 0:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # the server's streams: its fds 1 and 2
        worker._child(server, socket.socket(socket.AF_UNIX))
    server.close()
    reply = worker._receive(client)
    os.waitpid(pid, 0)
    log.close()
    text = (tmp_path / "log.txt").read_text()
    assert reply == {"status": 1}
    assert "Traceback (most recent call last)" in text and "FileNotFoundError" in text
    assert "os.chdir" in text  # the frame that failed, not only a one-line summary


def test_a_child_whose_log_is_on_a_full_device_still_replies_and_ends(tmp_path):
    """The job's stdout and stderr on /dev/full (every write fails with ENOSPC): the child's last flush (the
    job's summary line) fails, yet it answers its client with a status and ends itself, never falling back into
    the server's code."""
    from tradeoffs import worker

    client, server = socket.socketpair()
    full = os.open("/dev/full", os.O_WRONLY)
    config = json.dumps(plain(load_experiment("numerics", ["n_values=4096", "format=int8"])))
    argv = ["job", "--id", "numerics/full", "--config", config, "--out", str(tmp_path / "r" / "result.json")]
    worker._send(client, {"argv": argv, "cwd": str(tmp_path), "env": dict(os.environ)})
    socket.send_fds(client, [b"fds"], [full, full])
    pid = os.fork()
    if pid == 0:
        try:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            worker._child(server, socket.socket(socket.AF_UNIX))
        finally:
            os._exit(99)  # reached only if the child's own exit was skipped
    server.close()
    os.close(full)
    reply = worker._receive(client)
    _, status = os.waitpid(pid, 0)
    assert reply is not None and "status" in reply
    assert os.waitstatus_to_exitcode(status) == reply["status"] != 99
