"""A real SLURM: Debian's slurm-wlm and munge, a private single-node cluster on localhost, and the workflow run
through snakemake-executor-plugin-slurm with workflow/profiles/slurm.

The module installs the packages when they are missing (root and apt-get needed; it skips, saying why, where
it cannot), starts munged, slurmctld and slurmd by hand with their own key, socket, ports and state in a
temporary directory, and stops exactly those processes at the end, also when a test fails. Clients find the
cluster through a symlink /etc/slurm/slurm.conf -> that directory, made only where no configuration exists and
removed afterwards: the plugin's job step drops SLURM_CONF before its nested srun, so a private path in the
environment is not enough. The node declares one fake GPU (a placeholder file) so `--gpus` requests go through,
and at least 8 CPUs whatever the machine has, so small jobs run side by side as on a real node (the smoke
suite's cluster run: 157 s with a 2-core machine's 2 CPUs, 105 s with 8).

Tests: the smoke suite on SLURM gives the same experiments and metric values as a local run, with small jobs
grouped into one cluster job; a job killed with scancel mid-run is resubmitted (with twice the memory) and
no finished result is lost or recomputed; editing conf/ during a run changes none of its jobs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow
from tradeoffs.pipeline.plan import job_resources
from tradeoffs.results import Metric, read_result

pytestmark = pytest.mark.slow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo", "munge")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
# every metric of these kinds is a measurement, or derived from one: nothing to compare, not run locally
TIMED_KINDS = {"gemm", "qdq", "bandwidth", "inference"}
VIRTUAL_CPUS = 8
TARGET = "results/results.parquet"  # the experiments and the tidy table; report products are test_workflow's
# Ask for the plugin's first status check after 2 s (not 10): finished jobs stay listed for MinJobAge=600 s.
SLURM_ARGS = (
    "--executor",
    "slurm",
    "--workflow-profile",
    "workflow/profiles/slurm",
    "--cores",
    "2",
    "--default-resources",
    "slurm_account=tradeoffs",
    "--slurm-init-seconds-before-status-checks",
    "2",
)


def _run(*command: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def ensure_slurm_installed() -> None:
    """Install slurm-wlm and munge with apt-get where missing; skip where that cannot be done."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test needs root: it installs slurm-wlm and munge and starts their daemons")
    if all(shutil.which(name) for name in (*DAEMONS, *CLIENTS)):
        return
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        pytest.skip(f"SLURM is not installed and there is no apt-get to install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        (apt_get, "update", "-qq"),
        (apt_get, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES),
    ):
        try:
            result = _run(*command, timeout=600, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(command)}` did not finish in 600 s (no package mirror reachable?)")
        if result.returncode:
            pytest.skip(
                f"could not install {' '.join(PACKAGES)} (offline?): `{' '.join(command)}` exited with "
                f"{result.returncode}: {result.stderr.strip()[-500:]}"
            )
    missing = [name for name in (*DAEMONS, *CLIENTS) if not shutil.which(name)]
    if missing:
        pytest.skip(f"{' '.join(PACKAGES)} installed, but {', '.join(missing)} not found on PATH")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(what: str, check, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {log}:\n{log.read_text(errors='replace')[-2000:]}" for log in logs if log.exists())
    raise RuntimeError(f"{what} not within {timeout:.0f} s\n{tails}")


def _left_by_a_killed_run(conf: Path) -> bool:
    """Whether `conf` is this test's own link from a run that was killed: it points into a `tradeoffs-slurm-*`
    directory (or nowhere) and the slurmctld whose pid file sits beside its target is not running."""
    if not conf.is_symlink():
        return False
    target = conf.readlink()
    if not target.parent.name.startswith("tradeoffs-slurm-"):
        return not conf.exists()
    pid_file = target.parent / "slurmctld.pid"
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return True
    return False


class LocalSlurm:
    """A single-node SLURM cluster on localhost whose daemons this object starts and stops."""

    def __init__(self, root: Path):
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.socket = root / "munge" / "socket"
        self.processes: list[subprocess.Popen] = []
        self.linked_conf = False

    def _write_config(self) -> None:
        node = dict(re.findall(r"(\w+)=(\S+)", _run("slurmd", "-C").stdout))
        # The node offers at least VIRTUAL_CPUS (SlurmdParameters=config_overrides lets it claim more than the
        # machine's cores), so the smoke suite's small jobs start together, as on a real node, instead of two
        # at a time, each waiting out the plugin's status-check backoff.
        cpus, memory = max(int(node["CPUs"]), VIRTUAL_CPUS), int(int(node["RealMemory"]) * 0.9)  # full: INVALID
        for name in ("state", "spool", "log", "munge"):
            (self.root / name).mkdir()
        (self.root / "gpu0").touch()  # a placeholder device: the node has one fake GPU
        (self.root / "gres.conf").write_text(f"AutoDetect=off\nName=gpu File={self.root / 'gpu0'}\n")
        self.conf.write_text(
            f"""# A private single-node cluster for tests/test_slurm.py.
ClusterName=tradeoffs-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={self.socket}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "log" / "slurmctld.log"}
SlurmdLogFile={self.root / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _link_config(self) -> None:
        if _left_by_a_killed_run(SYSTEM_CONF):
            SYSTEM_CONF.unlink()
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            pytest.skip(
                f"{SYSTEM_CONF} exists (a real cluster, or another run of this test): this test brings up its "
                "own cluster and does not replace a configuration"
            )
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self.linked_conf = True

    def _daemon(self, *command: str) -> None:
        log = (self.root / "log" / f"{Path(command[0]).name}.out").open("w")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    def start(self) -> None:
        """munged, slurmctld, slurmd (in that order), each waited for; the node ends idle."""
        self.root.chmod(0o755)  # munged wants its socket's directories searchable by all
        self._write_config()
        self._link_config()
        logs = sorted((self.root / "log").glob("*"))
        key = self.root / "munge" / "munge.key"
        _run("mungekey", "--create", "--keyfile", str(key), check=True)
        self._daemon(
            shutil.which("munged"),
            "--foreground",
            f"--key-file={key}",
            f"--socket={self.socket}",
            f"--pid-file={self.root / 'munge' / 'munged.pid'}",
            f"--seed-file={self.root / 'munge' / 'seed'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
        )
        _wait_for("munged", lambda: _run("munge", "-S", str(self.socket), "-n").returncode == 0, 20, logs)
        self._daemon(shutil.which("slurmctld"), "-D", "-f", str(self.conf))
        logs = sorted((self.root / "log").glob("*"))
        _wait_for("slurmctld", lambda: "UP" in _run("scontrol", "ping").stdout, 30, logs)
        self._daemon(shutil.which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host)
        logs = sorted((self.root / "log").glob("*"))
        _wait_for("an idle node", lambda: _run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", 60, logs)

    def stop(self) -> None:
        """Cancel every job of this cluster, then stop the daemons this object started, newest first."""
        if len(self.processes) == 3:
            _run("scancel", "--full", "--user", "root")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _run("squeue", "-h", "-t", "running,completing").stdout.strip():
                time.sleep(0.5)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.linked_conf and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == self.conf:
            SYSTEM_CONF.unlink()

    def jobs(self, run_id: str) -> list[dict[str, str]]:
        """The jobs of one Snakemake run (the plugin names them by its run id), finished ones included."""
        fields = {"id": "%i", "state": "%T", "cpus": "%C", "memory": "%m", "time_limit": "%l", "comment": "%k"}
        out = _run("squeue", "-h", "-t", "all", "-n", run_id, "-o", "|".join(fields.values())).stdout
        return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]


@pytest.fixture(scope="module")
def slurm():
    """A running private cluster for this module; its daemons are stopped whatever happens."""
    ensure_slurm_installed()
    cluster = LocalSlurm(Path(tempfile.mkdtemp(prefix="tradeoffs-slurm-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def snakemake(workdir: Path, *args: str, targets: tuple[str, ...] = (TARGET,)) -> subprocess.CompletedProcess:
    result = _run(SNAKEMAKE, *args, *targets, cwd=workdir, timeout=400, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def planned(workdir: Path, suite: str) -> dict[str, str]:
    """Experiment id -> kind of the plan a run used (its cache in .snakemake/tradeoffs/)."""
    (path,) = (workdir / ".snakemake" / "tradeoffs").glob(f"plan-{suite}-*.json")
    return {e["id"]: e["kind"] for e in json.loads(path.read_text())["experiments"]}


def run_id(output: str) -> str:
    return re.search(r"SLURM run ID: (\S+)", output).group(1)


def results(workdir: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(workdir / "results")): p for p in (workdir / "results").glob("*/*/result.json")}


@pytest.fixture(scope="module")
def smoke_runs(slurm, tmp_path_factory):
    """The smoke suite on the cluster and, at the same time, locally its experiments whose metrics can be
    compared (a benchmark's are all measurements), each in its own copy of the workflow."""
    local, cluster = (copy_workflow(tmp_path_factory.mktemp(name)) for name in ("local", "cluster"))
    code = (
        "import json, tradeoffs.pipeline.plan as p; "
        "print(json.dumps({e.id: e.kind for e in p.load_plan('smoke').experiments}))"
    )
    kinds = json.loads(_run(sys.executable, "-c", code, cwd=local, timeout=300, check=True).stdout)
    shutil.copytree(local / ".snakemake", cluster / ".snakemake")  # planned once: both runs read that cache
    comparable = [f"results/{e}/result.json" for e, kind in kinds.items() if kind not in TIMED_KINDS]
    local_args = ("--config", "suite=smoke", "--cores", "2", "--workflow-profile", "workflow/profiles/default")
    local_run = subprocess.Popen(
        (SNAKEMAKE, *local_args, *comparable), cwd=local, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output = snakemake(cluster, "--config", "suite=smoke", *SLURM_ARGS)
        local_output, _ = local_run.communicate(timeout=400)
    finally:
        if local_run.poll() is None:
            local_run.kill()
            local_run.communicate()
    assert local_run.returncode == 0, local_output[-5000:]
    return local, cluster, output.stdout + output.stderr


def measured(metric: Metric) -> bool:
    """A measurement of the machine (a time, its spread or sample count, a rate, memory, utilisation), which no
    two runs share; the adaptive timer's records carry its stop reason."""
    timing = metric.name.startswith("time_") or metric.name == "mfu" or "stop_reason" in metric.labels
    return timing or metric.unit in {"s", "B", "MiB", "%"} or metric.unit.endswith("/s")


def test_smoke_suite_on_slurm_equals_local_run(smoke_runs, slurm):
    local, cluster, output = smoke_runs
    local_results, cluster_results = results(local), results(cluster)
    kinds = planned(cluster, "smoke")
    assert set(cluster_results) == set(kinds)
    assert set(local_results) == {e for e, kind in kinds.items() if kind not in TIMED_KINDS}
    for experiment_id, path in cluster_results.items():
        ours = read_result(path)
        assert ours.status != "error", (experiment_id, ours.message)
        if experiment_id in local_results:
            theirs = read_result(local_results[experiment_id])
            assert ours.status == theirs.status, experiment_id
            assert [m.name for m in ours.metrics] == [m.name for m in theirs.metrics], experiment_id
            assert [(m.name, m.labels, m.value) for m in ours.metrics if not measured(m)] == [
                (m.name, m.labels, m.value) for m in theirs.metrics if not measured(m)
            ], experiment_id
    assert (cluster / TARGET).is_file()

    jobs = slurm.jobs(run_id(output))
    assert jobs and {job["state"] for job in jobs} == {"COMPLETED"}, jobs
    # The numerics experiments are small: one cluster job runs them all, two at a time (--cores 2), asking for
    # two of their memory; the plugin keeps the logs of successful jobs.
    numerics = [read_result(p).config for e, p in cluster_results.items() if e.startswith("numerics/")]
    sizes = {job_resources("numerics", config) for config in numerics}
    assert len(numerics) >= 4 and len(sizes) == 1, sizes
    size = sizes.pop()
    grouped = [job for job in jobs if job["comment"] == "rule_numerics_numerics"]
    assert len(grouped) == 1 and len(jobs) < len(cluster_results), jobs
    assert grouped[0]["cpus"] == "2" and grouped[0]["memory"] == f"{2 * size.mem_mb}M", grouped
    assert (cluster / ".snakemake" / "slurm_logs" / "group_numerics_numerics" / f"{grouped[0]['id']}.log").is_file()


SLOW = {  # a Hadamard rotation of 4096 on 2^24 values: about 10 s, and too big to be grouped
    "kind": "numerics",
    "fixed": {"format": "nvfp4", "n_values": 2**24, "row_size": 4096, "rotation": "hadamard", "rotation_size": 4096},
}
ON_GPU = {"kind": "numerics", "fixed": {"hardware": "h100_sxm", "n_values": 65536, "row_size": 1024}}


def test_killed_job_is_retried_and_finished_results_are_kept(smoke_runs, slurm):
    _, cluster, _ = smoke_runs
    suite = yaml.safe_load((cluster / "conf" / "suite" / "smoke.yaml").read_text())
    suite["name"] = "kill"
    suite["experiments"].update(slow=SLOW, gpu=ON_GPU)
    suite_file = cluster / "conf" / "suite" / "kill.yaml"
    suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))
    finished = {e: (p.stat().st_mtime_ns, p.read_bytes()) for e, p in results(cluster).items()}

    command = (SNAKEMAKE, "--config", "suite=kill", *SLURM_ARGS, TARGET)
    process = subprocess.Popen(command, cwd=cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Kill the slow experiment's job once its command has started (its log exists) and it is running.
        deadline, killed = time.monotonic() + 120, None
        while killed is None and time.monotonic() < deadline and process.poll() is None:
            started = list((cluster / "results" / "numerics").glob("slow-*/log.txt"))
            running = _run("squeue", "-h", "-t", "running", "-o", "%i|%k").stdout.splitlines()
            slow_jobs = [line.split("|")[0] for line in running if "slow-" in line]
            if started and slow_jobs:
                assert not (started[0].parent / "result.json").exists()
                # Editing conf/ now (a new id for the slow experiment) must not reach the retried job: it reads
                # the plan its run pinned, not conf/.
                edited = {**suite["experiments"], "slow": {**SLOW, "fixed": {**SLOW["fixed"], "rotation_size": 2048}}}
                suite_file.write_text(yaml.safe_dump({**suite, "experiments": edited}, sort_keys=False))
                _run("scancel", slow_jobs[0], check=True)
                killed = slow_jobs[0]
            time.sleep(0.3)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert killed is not None, "the slow job was never seen running"
    assert process.returncode == 0, output[-5000:]
    assert "Trying to restart job" in output

    slow = [job for job in slurm.jobs(run_id(output)) if "slow-" in job["comment"]]
    assert [job["state"] for job in slow] == ["CANCELLED", "COMPLETED"], slow
    assert slow[0]["id"] == killed
    now = results(cluster)
    slow_id = next(e for e in now if e.startswith("numerics/slow-"))
    size = job_resources("numerics", read_result(now[slow_id]).config)
    assert size.group is None  # ran alone: killing it touched no other experiment
    assert [job["memory"] for job in slow] == [f"{size.mem_mb}M", f"{2 * size.mem_mb}M"]  # retry: twice the memory
    assert read_result(now[slow_id]).status == "ok" and read_result(now[slow_id]).config["rotation_size"] == 4096

    # The experiment on a (fake) GPU got one from SLURM.
    gpu_id = next(e for e in now if e.startswith("numerics/gpu-"))
    gpu_jobs = [job["id"] for job in slurm.jobs(run_id(output)) if "gpu-" in job["comment"]]
    assert len(gpu_jobs) == 1 and "TresPerJob=gres:gpu:1" in _run("scontrol", "show", "job", gpu_jobs[0]).stdout
    assert read_result(now[gpu_id]).config["hardware"]["device"] == "cuda"

    # Nothing that had finished was deleted or run again.
    assert set(now) == {*finished, slow_id, gpu_id}
    assert {e: (now[e].stat().st_mtime_ns, now[e].read_bytes()) for e in finished} == finished
    suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))  # the suite as run: nothing left to do
    assert "Nothing to be done" in snakemake(cluster, "--config", "suite=kill", *SLURM_ARGS, "-n").stdout
