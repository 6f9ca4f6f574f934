"""A warm worker for local runs: one server process imports torch and the experiment kinds once, and forks a
child per job, so a sub-second experiment does not pay a fresh interpreter and torch's import (seconds).

Each Snakemake job stays one experiment with its own rule, result.json and log: its shell runs the light
client `python -m tradeoffs.worker job ...` (standard library only; collect, the report products and the
claims go the same way), which hands the job's arguments, working
directory, environment and its stdout/stderr file descriptors to the server over a Unix socket and exits
with the child's exit status. The child runs `python -m tradeoffs job ...` exactly as a fresh process would
(`tradeoffs.__main__.main`), writing to the job's own log. A failed child is that job's failure only.

The server is started by the first client (a file lock keeps it to one) and exits after `IDLE_S` seconds
without jobs. Its socket (in a private directory of the temporary directory) is keyed on the project and a
digest of the package sources and the interpreter, so editing the code starts a fresh server instead of
running stale code, and on the environment that torch reads as it loads (`TORCH_SETTINGS`: ATEN_CPU_CAPABILITY,
ONEDNN_MAX_CPU_ISA, TORCHINDUCTOR_*, ...), so a job under other settings never runs in a server that loaded
torch under these; a server that fails to start is not waited for (the job then runs in its own process).

The rendezvous is trusted only when this user made it: the directory must be a real directory (not a link)
owned by this uid with no access for group or others, the socket a socket owned by this uid, and the process
listening on it must run as this uid (the kernel's peer credentials); the server likewise serves only clients
of its own uid. Anything else (a directory another local user created first, a file in its place, a listener of
another uid) is refused with a warning and the job runs in its own process: a job's arguments, environment and
output handles never reach another user, and a failure of the worker is never the job's failure.
Inside a SLURM job (SLURM_JOB_ID set) or with
TRADEOFFS_WORKER=off the client runs the job in its own process, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

IDLE_S = 60.0  # the server exits after this long without a job
START_TIMEOUT_S = 120.0  # a cold server imports torch and every kind: tens of seconds on a loaded machine
PACKAGE = Path(__file__).resolve().parent
PRELOADED = (
    "matplotlib.pyplot",
    "pandas",
    "seaborn",
    "tradeoffs.__main__",
    "tradeoffs.pipeline.config",
    "tradeoffs.pipeline.runner",
    "tradeoffs.results",
    "tradeoffs.report.claims",
    "torch._dynamo",  # AdamW imports it on construction: 1.5 s a training job otherwise pays in its fork
)
# Environment variables that torch, oneDNN and inductor read once, as the server loads them (the kernels' ISA,
# compiler configuration and cache): a fork inherits the server's reading whatever the client's environment says.
TORCH_SETTINGS = ("ATEN_", "ONEDNN_", "DNNL_", "MKLDNN_", "TORCH", "PYTORCH_")


def _digest() -> str:
    """Package sources and interpreter: a server is only reused by clients of the very same code."""
    digest = hashlib.sha256(sys.executable.encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def torch_settings(environment: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables of `environment` that torch reads as it loads (TORCH_SETTINGS prefixes), sorted."""
    return {name: environment[name] for name in sorted(environment) if name.startswith(TORCH_SETTINGS)}


def socket_path(root: Path | None = None) -> Path:
    """Where this code's server for this project and these torch settings listens: a short name (Unix socket
    paths are limited to about 100 bytes) in a private directory of the temporary directory, keyed on the
    project, the code digest and `torch_settings()`."""
    from tradeoffs.paths import project_root

    project = str((root or project_root()).resolve())
    settings = json.dumps(torch_settings())
    key = hashlib.sha256(f"{project}\0{_digest()}\0{settings}".encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"tradeoffs-{os.getuid()}" / f"worker-{key}.sock"


def enabled() -> bool:
    """Whether jobs go through the warm worker: locally, unless TRADEOFFS_WORKER=off; never inside SLURM."""
    return os.environ.get("TRADEOFFS_WORKER", "on") != "off" and "SLURM_JOB_ID" not in os.environ


# ----------------------------------------------------------------------------------------------- client
def _send(sock: socket.socket, payload: dict) -> None:
    data = json.dumps(payload).encode()
    sock.sendall(len(data).to_bytes(8, "big") + data)


def _receive(sock: socket.socket) -> dict | None:
    header = _read_exactly(sock, 8)
    if header is None:
        return None
    data = _read_exactly(sock, int.from_bytes(header, "big"))
    return None if data is None else json.loads(data)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class UntrustedRendezvous(Exception):
    """The worker's directory, socket or listening process is not this user's own: the job runs without it."""


def _private_directory(directory: Path) -> None:
    """Create the rendezvous directory (mode 0700), or accept an existing one only if this user made it: a
    real directory, owned by this uid, with no access for group or others."""
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedRendezvous(f"{directory} is not a directory (a link or a file is in its place)")
    if info.st_uid != os.getuid():
        raise UntrustedRendezvous(f"{directory} is owned by uid {info.st_uid}, not by this user ({os.getuid()})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UntrustedRendezvous(f"{directory} has mode {stat.S_IMODE(info.st_mode):04o}, not 0700")


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket (Linux's SO_PEERCRED), or None where
    the platform does not tell."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", credentials)
    return uid


def _connect(path: Path) -> socket.socket | None:
    """Connect to the server listening on `path`; None if nothing listens there. A socket file or a listener
    that is not this user's raises UntrustedRendezvous."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise UntrustedRendezvous(f"{path} is not a socket of this user (uid {info.st_uid}, mode {info.st_mode:o})")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        raise UntrustedRendezvous(f"the process listening on {path} runs as uid {uid}, not as this user")
    return sock


def _start_server(path: Path) -> socket.socket | None:
    """Connect to this code's server, starting it first if none listens (one starter at a time)."""
    _private_directory(path.parent)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)
        if sock is not None:
            return sock
        path.unlink(missing_ok=True)
        log = open(path.with_suffix(".log"), "a")  # noqa: SIM115 -- handed to the detached server
        server = subprocess.Popen(
            [sys.executable, "-m", "tradeoffs.worker", "serve", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=os.getcwd(),
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.poll() is None:  # a server that died is not waited for
            sock = _connect(path)
            if sock is not None:
                return sock
            time.sleep(0.05)
    return None


def run_job(argv: list[str]) -> int:
    """Run `python -m tradeoffs <argv>` through the warm worker (or in this process where it is off or fails
    to start); returns the exit status."""
    sock = None
    if enabled():
        try:
            sock = _start_server(socket_path())
        except (OSError, UntrustedRendezvous) as reason:
            print(f"warning: warm worker not used ({reason}); running the job in this process", file=sys.stderr)
    if sock is None:
        return _run_here(argv)
    with sock:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        _send(sock, request)
        socket.send_fds(sock, [b"fds"], [sys.stdout.fileno(), sys.stderr.fileno()])
        reply = _receive(sock)
    if reply is None:
        print("error: the warm worker ended the job without a status; see its log", file=sys.stderr)
        return 1
    return int(reply["status"])


def _run_here(argv: list[str]) -> int:
    from tradeoffs.__main__ import main

    try:
        main(argv)
    except SystemExit as done:
        return _exit_status(done)
    return 0


def _exit_status(done: SystemExit) -> int:
    if done.code is None:
        return 0
    if isinstance(done.code, int):
        return done.code
    print(done.code, file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------------------------- server
def _preload() -> None:
    """Import what every job needs (torch, the kinds and the libraries they use, the config schemas, the report
    modules with pandas and matplotlib), so a forked child starts with them; no tensor work here, so the child
    starts with no thread pool."""
    import torch

    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    for module in PRELOADED:
        importlib.import_module(module)
    from tradeoffs.kinds import get_kind, kind_names
    from tradeoffs.report import FIGURES, TABLES

    for kind in kind_names():
        get_kind(kind)
    for product in (*FIGURES.values(), *TABLES.values()):
        importlib.import_module(product.target.split(":")[0])


def _end_with_client(connection: socket.socket) -> None:
    """End the child when its client goes away (Snakemake interrupted or killed the job): nothing runs unowned."""
    with contextlib.suppress(OSError):
        if not connection.recv(1):
            os._exit(130)


def _child(connection: socket.socket, listener: socket.socket) -> None:
    """In the forked child: take the client's stdout/stderr, environment and directory, run the job, reply."""
    listener.close()
    request = _receive(connection)
    _, fds, _, _ = socket.recv_fds(connection, 16, 2)
    threading.Thread(target=_end_with_client, args=(connection,), daemon=True).start()
    status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        status = _run_here(request["argv"])
    except BaseException as error:  # the job's own failures are result rows; this is the worker failing
        traceback.print_exc()
        print(f"error: warm worker child failed: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        try:  # a full disk can fail the flush of the job's log: the child still replies and ends here
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            with contextlib.suppress(OSError):
                _send(connection, {"status": status})
        finally:
            os._exit(status)


def serve(path: Path, idle_s: float = IDLE_S) -> None:
    """Listen on `path`, forking one child per job, until `idle_s` pass with no job running or arriving."""
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    listener.bind(str(temporary))
    os.chmod(temporary, 0o600)
    listener.listen(64)
    os.replace(temporary, path)  # clients connect only once the server is ready
    children: set[int] = set()
    last_active = time.monotonic()
    listener.settimeout(1.0)
    try:
        while True:
            _reap(children)
            if children:
                last_active = time.monotonic()
            elif time.monotonic() - last_active > idle_s:
                break
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            last_active = time.monotonic()
            if _same_user(connection):
                children.add(_fork_job(connection, listener))
        path.unlink(missing_ok=True)  # no new client can connect; serve the ones already queued
        listener.setblocking(False)
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                break
            if _same_user(connection):
                children.add(_fork_job(connection, listener))
        for pid in children:
            os.waitpid(pid, 0)
    finally:
        path.unlink(missing_ok=True)
        listener.close()


def _same_user(connection: socket.socket) -> bool:
    """Serve only clients of this server's own uid (the socket's mode already keeps others out)."""
    uid = peer_uid(connection)
    if uid is None or uid == os.getuid():
        return True
    print(f"refused a client of uid {uid}", file=sys.stderr)
    connection.close()
    return False


def _fork_job(connection: socket.socket, listener: socket.socket) -> int:
    connection.setblocking(True)
    pid = os.fork()
    if pid == 0:
        _child(connection, listener)
    connection.close()
    return pid


def _reap(children: set[int]) -> None:
    for pid in list(children):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)


def main(argv: list[str] | None = None) -> None:
    """`python -m tradeoffs.worker job ARGS...` runs `tradeoffs job ARGS...` warm; `serve SOCKET` is the server."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(Path(argv[1]))
        return
    sys.exit(run_job(argv))


if __name__ == "__main__":
    main()
