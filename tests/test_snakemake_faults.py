"""Faults inside a workflow run become error rows: a results/<kind>/ that is read-only or full leaves each affected
run's error row in results/failed/<kind>/<name>/ with the reason, collect and the report still run, and `clean
--status error` makes the next run retry them. The faults are real: a read-only or tiny tmpfs mounted over the
kind's folder (as root; skipped where mounting is refused), a folder without write permission (as any other
user), or a file-size limit (RLIMIT_FSIZE, for anyone)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tradeoffs.__main__ import main
from tradeoffs.identity import plain
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.failures import collect_inputs, fallback_path, finishable, recorded_failure
from tradeoffs.pipeline.failures import main as failures_main
from tradeoffs.pipeline.plan import PlannedExperiment, load_plan
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.results import read_result

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
UNWRITABLE = r"cannot write results/numerics/\S+: (Read-only file system|Permission denied)"
SUITE = """experiments:
  probe:
    kind: numerics
    sweep:
      format: [int8, nvfp4]
    fixed: {n_values: 4096, row_size: 64}
  lmul:
    fixed: {n_values: 4096}
"""


def _mount_tmpfs(path: Path, options: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def read_only():
    """read_only(path): make the folder `path` unwritable for this process: a read-only tmpfs over it as root
    (whom permissions do not stop), else mode 0555."""
    undo: list[tuple[str, Path]] = []

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _mount_tmpfs(path, "size=1m,ro")
            undo.append(("umount", path))
        else:
            path.chmod(0o555)
            undo.append(("chmod", path))
        return path

    yield make
    for how, path in reversed(undo):
        if how == "umount":
            subprocess.run(["umount", str(path)], check=True)
        else:
            path.chmod(0o755)


@pytest.fixture
def tiny_disk():
    """tiny_disk(path, size): a tmpfs of `size` over the folder `path`, so writes run out of space for real
    (mounting needs root: skipped otherwise)."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        _mount_tmpfs(path, f"size={size}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=True)


def _fill(disk: Path) -> None:
    """Write zeros into `disk` until the filesystem refuses (ENOSPC)."""
    with pytest.raises(OSError, match="No space left"), (disk / "filler").open("wb") as stream:
        while True:
            stream.write(b"\0" * 4096)
            stream.flush()


def _job(experiment_id: str) -> list[str]:
    config = load_experiment("numerics", ["n_values=4096", "row_size=64"])
    out = f"results/{experiment_id}/result.json"
    return ["job", "--id", experiment_id, "--config", json.dumps(plain(config)), "--out", out]


# --- one job -----------------------------------------------------------------------------------------------


def test_a_job_by_hand_into_a_read_only_kind_folder_names_it_and_records_its_error_row(workflow_dir, read_only):
    read_only(workflow_dir / "results/numerics")
    with pytest.raises(SystemExit) as stopped:
        main([*_job("numerics/ro"), "--exit-zero-on-failure"])  # no result where planned: never exit 0
    message = str(stopped.value.code)
    assert re.match(f"error: {UNWRITABLE}; recorded as an error row in results/failed/numerics/ro/result.json", message)
    record = read_result(workflow_dir / "results/failed/numerics/ro/result.json")
    assert record.id == "numerics/ro" and record.status == "error" and re.match(UNWRITABLE, record.message)
    assert record.config["kind"] == "numerics" and record.provenance["host"]
    assert re.search(UNWRITABLE, (workflow_dir / "results/failed/numerics/ro/log.txt").read_text())


def test_a_result_that_does_not_fit_is_an_error_row_elsewhere_and_a_later_success_removes_it(workflow_dir, tiny_disk):
    disk = tiny_disk(workflow_dir / "results/numerics", "64k")
    out = Path("results/numerics/full/result.json")
    out.parent.mkdir()
    _fill(disk)
    config = load_experiment("numerics", ["n_values=4096", "row_size=64"])
    with pytest.raises(OSError, match=f"^no space left on {out} \\(the run ended ok\\); recorded as an error row"):
        run_experiment("numerics/full", config, out)
    assert not out.exists() and recorded_failure(out) == fallback_path(out)
    assert read_result(fallback_path(out)).message == f"no space left on {out} (the run ended ok)"
    assert read_result(fallback_path(out)).metrics == []

    (disk / "filler").unlink()
    assert run_experiment("numerics/full", config, out).status == "ok"
    assert read_result(out).status == "ok" and not fallback_path(out).parent.exists()


def test_a_file_size_limit_makes_the_result_an_error_row_elsewhere_without_root(workflow_dir):
    """RLIMIT_FSIZE (`ulimit -f`) makes a write fail with EFBIG as a full disk would, for any user: the numerics
    result (over 4 kB) does not fit, its error row (no metrics, about 2.5 kB) does."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = subprocess.run(
        [sys.executable, "-m", "tradeoffs", *_job("numerics/big"), "--exit-zero-on-failure"],
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    out = "results/numerics/big/result.json"
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"error: cannot write {out}: File too large (the run ended ok); recorded as an error row" in done.stderr
    assert not Path(out).exists() and read_result(fallback_path(out)).status == "error"


def test_a_failed_job_whose_folder_is_full_is_recorded_and_keeps_its_exit_status(workflow_dir, tiny_disk):
    """What the workflow runs after a job exits non-zero: on a full folder an error row naming it; on a writable
    folder nothing (the failure was something else); either way the job's exit status."""
    config = json.dumps({"kind": "numerics", "seed": 3})
    writable = Path("results/numerics/writable/result.json")
    writable.parent.mkdir(parents=True)
    with pytest.raises(SystemExit) as stopped:
        failures_main(["numerics/writable", str(writable), config, "7"])
    assert stopped.value.code == 7 and not fallback_path(writable).exists()

    disk = tiny_disk(workflow_dir / "results/train", "4k")
    full = Path("results/train/full/result.json")
    full.parent.mkdir()
    _fill(disk)
    with pytest.raises(SystemExit) as stopped:
        failures_main(["train/full", str(full), config, "1"])
    assert stopped.value.code == 1
    record = read_result(fallback_path(full))
    assert record.message.startswith("no space left on results/train/full (its job exited with status 1")
    assert record.seed == 3 and record.kind == "numerics"


def test_the_probe_before_a_run_records_unwritable_folders_and_the_runs_reading_them(workflow_dir, read_only):
    read_only(workflow_dir / "results/train")
    train = PlannedExperiment("train/base", "train", (), {"kind": "train", "seed": 0})
    capture = PlannedExperiment("capture/c", "capture", (), {"kind": "capture"}, inputs=(train.result_path,))
    probe = PlannedExperiment("numerics/p", "numerics", (), {"kind": "numerics"})
    runs = [capture, train, probe]  # a reader before its source: the order of a plan is not relied on

    assert collect_inputs(runs, probe=False) == [r.result_path for r in runs]  # a dry run writes nothing
    assert not Path("results/failed").exists()
    warnings: list[str] = []
    chosen = collect_inputs(runs, probe=True, warn=warnings.append)
    assert chosen == [str(fallback_path(capture.result_path)), str(fallback_path(train.result_path)), probe.result_path]
    assert re.match(r"cannot write results/train/base: .* \(found by the workflow", read_result(chosen[1]).message)
    assert read_result(chosen[0]).message.startswith("not run: its input train/base has no result (cannot write")
    assert len(warnings) == 2 and all("recorded as an error row in results/failed/" in w for w in warnings)
    assert Path("results/numerics/p").is_dir()  # created before Snakemake would, so it cannot fail mid-run
    assert collect_inputs(runs, probe=True) == chosen  # recorded once: the same rows on the next pass
    table = Path("results/results.parquet")
    assert not finishable(runs, 0, table)  # numerics/p has neither a result nor a row: it must run
    Path(probe.result_path).write_text("{}")
    assert finishable(runs, 0, table) and not finishable(runs, float("inf"), table)
    table.write_text("")
    assert not finishable(runs, 0, table)  # collect ran in this pass: what failed came after it


# --- whole workflow runs -----------------------------------------------------------------------------------


def _snakemake(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "--workflow-profile", "workflow/profiles/default", "--config", "suite=fault", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _assert_report_written(root: Path) -> pd.DataFrame:
    table = pd.read_parquet(root / "results/results.parquet").drop_duplicates("id").set_index("id")
    (lmul,) = (e.id for e in load_plan("fault").experiments if e.kind == "lmul")
    assert len(table) == 3 and table.loc[lmul, "status"] == "ok", table[["status", "message"]]
    assert (root / "reports/figures/numerics_lmul.png").stat().st_size > 10_000
    assert (root / "reports/tables/numerics_lmul.csv").is_file()
    assert "# Paper claims and their verdicts" in (root / "reports/claims.md").read_text()
    return table[table.index.str.startswith("numerics/")]


def _snakemake_log(root: Path) -> str:
    return "".join(path.read_text() for path in sorted((root / ".snakemake/log").glob("*.snakemake.log")))


@pytest.mark.slow
def test_a_read_only_kind_folder_gives_error_rows_a_report_and_a_retry_after_clean(workflow_dir, read_only):
    (workflow_dir / "conf/suite/fault.yaml").write_text(SUITE)
    read_only(workflow_dir / "results/numerics")
    done = _snakemake(workflow_dir, "--cores", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    failed = _assert_report_written(workflow_dir)
    assert len(failed) == 2 and set(failed["status"]) == {"error"}
    assert all(re.match(UNWRITABLE, message) for message in failed["message"]), failed["message"]
    for experiment_id in failed.index:
        assert f"{experiment_id}: cannot write results/{experiment_id}" in _snakemake_log(workflow_dir)
        assert (workflow_dir / "results/failed" / experiment_id / "log.txt").is_file()

    main(["clean", "--status", "error", "--suite", "fault"])
    assert not list((workflow_dir / "results/failed").rglob("*.*"))  # rows and logs gone
    assert not (workflow_dir / "results/results.parquet").exists()
    assert all((workflow_dir / e.result_path).is_file() for e in load_plan("fault").of_kind("lmul"))
    dry = _snakemake(workflow_dir, "-n").stdout
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", dry, flags=re.MULTILINE))
    assert planned.get("numerics") == "2" and "lmul" not in planned, dry[-2000:]


@pytest.mark.slow
def test_a_kind_folder_that_fills_up_during_the_run_gives_error_rows_and_the_report(workflow_dir, tiny_disk):
    """One page of space: each numerics job needs two (its log and its result), so each fails mid-run, after
    the probe found room. Snakemake counts them failed (exit 1); their rows say so, and the second pass writes
    the table, the products and the claims."""
    (workflow_dir / "conf/suite/fault.yaml").write_text(SUITE)
    tiny_disk(workflow_dir / "results/numerics", "4k")
    done = _snakemake(workflow_dir, "--cores", "2")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "collect, the report and the claims run now" in done.stderr
    failed = _assert_report_written(workflow_dir)
    assert len(failed) == 2 and set(failed["status"]) == {"error"}
    assert all(m.startswith("no space left on results/numerics/") for m in failed["message"]), failed["message"]
    log = _snakemake_log(workflow_dir)
    assert all(f"{experiment_id}: no space left on results/{experiment_id}" in log for experiment_id in failed.index)
    assert "Nothing to be done" in _snakemake(workflow_dir, "-n").stdout
