"""Faults and bad input at the pipeline's edges: crafted checkpoints run no code, a full disk is named and
leaves no temporaries, an unreadable result is an error row, failed jobs run by hand exit non-zero, result
files follow the umask, and bad `job`/`figure`/`table` arguments are named."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT
from conftest import TRAIN_TINY as TINY
from tradeoffs.__main__ import main
from tradeoffs.identity import plain
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.plan import build_plan
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.results import Metric, ResultRecord, read_result, write_json_atomic, write_result
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
    arguments = ["job", "--id", "numerics/ro", "--config", json.dumps(plain(config)), "--out", str(out)]
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
    return ["job", "--id", "train/vocab", "--config", json.dumps(plain(config)), "--out", str(out), *flags], out


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


def _tidy_row() -> dict:
    """One row with the tidy table's columns (tradeoffs.results.TABLE_COLUMNS)."""
    return {"id": "gemm/x", "kind": "gemm", "status": "ok", "message": "", "metric": "tflops", "value": 1.0, "unit": ""}


def test_figure_and_table_name_a_missing_results_table(tmp_path):
    missing = tmp_path / "results.parquet"
    for command, name in (("figure", "train_loss"), ("table", "train_recipes")):
        with pytest.raises(SystemExit, match=f"error: results table {missing} not found"):
            main([command, name, str(missing), str(tmp_path / "out")])
    assert list(tmp_path.iterdir()) == []


def test_figure_and_table_name_a_missing_reference_set(tmp_path):
    table = tmp_path / "results.parquet"
    pd.DataFrame([_tidy_row()]).to_parquet(table)
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


# --- sources come from the plan, inside results/ -----------------------------------------------------------


def test_a_job_cannot_read_a_source_outside_the_results_directory(workflow_dir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "train/x/result.json"
    write_result(outside, replace(_record("train/x"), artifacts=["checkpoint.pt"]))
    config = load_experiment("capture", ["source_id=train/x"])
    out = workflow_dir / "results/capture/x/result.json"
    record = run_experiment("capture/x", config, out, inputs=(outside,))
    assert record.status == "error" and f"source result {outside} is outside the results directory" in record.message


# --- retrying failed runs ----------------------------------------------------------------------------------

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
RETRY_SUITE = f"""experiments:
  probe:
    kind: numerics
    fixed: {{n_values: 4096, row_size: 64}}
  broken:  # a real failure: 256 token ids, 64 embeddings
    kind: train
    fixed: {{{", ".join(o.replace("=", ": ") for o in TINY)}, model.vocab_size: 64, steps: 2, eval_interval: 2}}
"""


def _snakemake(root: Path, *args: str) -> str:
    done = subprocess.run([SNAKEMAKE, "--config", "suite=retry", *args], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_clean_makes_snakemake_rerun_the_failed_runs_only(workflow_dir, capsys):
    """Deleting a failed run's directory alone leaves the tidy table up to date ("Nothing to be done"); `clean
    --status error` removes the failed runs' results and the table, so the next run reruns exactly those."""
    (workflow_dir / "conf/suite/retry.yaml").write_text(RETRY_SUITE)
    _snakemake(workflow_dir, "--cores", "2")
    table = pd.read_parquet(workflow_dir / "results/results.parquet").drop_duplicates("id").set_index("id")
    (failed,) = table.index[table["status"] == "error"]
    (kept,) = table.index[table["status"] == "ok"]
    kept_mtime = (workflow_dir / "results" / kept / "result.json").stat().st_mtime_ns

    (workflow_dir / "results" / failed).rename(workflow_dir / "deleted-by-hand")  # the README's retry before
    assert "Nothing to be done" in _snakemake(workflow_dir, "-n")
    (workflow_dir / "deleted-by-hand").rename(workflow_dir / "results" / failed)

    main(["clean", "--status", "error", "--suite", "retry"])
    assert f"removed {workflow_dir / 'results' / failed}" in capsys.readouterr().out
    assert not (workflow_dir / "results" / failed).exists()
    assert not (workflow_dir / "results/results.parquet").exists()
    dry = _snakemake(workflow_dir, "-n")
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", dry, flags=re.MULTILINE))
    assert planned.get("train") == "1" and planned.get("collect") == "1" and "numerics" not in planned, dry[-2000:]
    assert (workflow_dir / "results" / kept / "result.json").stat().st_mtime_ns == kept_mtime
    main(["clean", "--status", "error", "--suite", "retry"])  # nothing left to remove
    assert "no runs ended error" in capsys.readouterr().out


CLEAN_SUITE = RETRY_SUITE.replace("fixed: {n_values", "sweep: {format: [int8, mxfp4]}\n    fixed: {n_values")


def test_clean_lists_with_dry_run_and_removes_finished_results_only_with_yes(workflow_dir, capsys):
    """`clean --status ok` deleted every finished result and both tables without a prompt."""
    (workflow_dir / "conf/suite/retry.yaml").write_text(CLEAN_SUITE)
    plan = build_plan("retry")
    for e in plan.experiments:
        main(["job", "--id", e.id, "--config", e.config_json(), "--out", e.result_path, "--exit-zero-on-failure"])
    main(["collect", "results/results.parquet", "results/results.csv", *plan.result_paths()])
    status = {e.id: read_result(e.result_path).status for e in plan.experiments}
    ok = sorted(workflow_dir / "results" / i for i, s in status.items() if s == "ok")
    (failed,) = (workflow_dir / "results" / i for i, s in status.items() if s == "error")
    tables = [workflow_dir / "results/results.parquet", workflow_dir / "results/results.csv"]
    everything = [*ok, failed, *tables]
    capsys.readouterr()

    main(["clean", "--status", "ok", "error", "--suite", "retry", "--dry-run"])
    listed = capsys.readouterr().out.splitlines()
    assert sorted(listed) == sorted(f"would remove {path}" for path in everything)
    assert all(path.exists() for path in everything)

    with pytest.raises(SystemExit) as refused:
        main(["clean", "--status", "error", "ok", "--suite", "retry"])
    message = str(refused.value)
    assert f"would delete {len(ok)} finished (ok) result(s) of suite 'retry'" in message and "--yes" in message
    assert all(path.exists() for path in everything), "a refused clean removed something"

    main(["clean", "--status", "error", "--suite", "retry"])  # failed runs need no confirmation
    assert not failed.exists() and not any(table.exists() for table in tables)
    main(["clean", "--status", "ok", "--suite", "retry", "--yes"])
    assert sorted(capsys.readouterr().out.splitlines()[-len(ok) :]) == [f"removed {path}" for path in ok]
    assert not any(path.exists() for path in ok)


# --- the thread count is part of the id --------------------------------------------------------------------


def _hand_run(arguments: list[str], capsys) -> tuple[str, ResultRecord]:
    main(arguments)
    experiment_id = capsys.readouterr().out.splitlines()[0].split(":")[0]
    return experiment_id, read_result(Path("results") / experiment_id / "result.json")


# Measured rather than computed: times, rates and memory (and MFU, a rate over a peak) vary run to run.
MEASURED_UNITS = {"s", "token/s", "TFLOP/s", "GB/s", "MiB", "B", "%"}


def _values(record: ResultRecord) -> list[tuple]:
    """The metrics of a run that a rerun must reproduce bit for bit: all but the measured ones."""
    return [
        (m.name, json.dumps(m.labels, sort_keys=True), m.value)
        for m in record.metrics
        if m.unit not in MEASURED_UNITS and m.name != "mfu"
    ]


def test_the_planner_fixes_each_jobs_thread_count_in_its_config(workflow_dir):
    (workflow_dir / "conf/suite/threads.yaml").write_text(
        "experiments:\n  numerics: {sweep: {hardware.threads: [0, 3]}}\n  gemm: {}\n  train: {}\n"
    )
    plan = build_plan("threads")
    for experiment in plan.experiments:
        assert experiment.config["hardware"]["threads"] == experiment.job.threads >= 1, experiment.id
    assert [e.job.threads for e in plan.of_kind("numerics")] == [1, 3]
    assert plan.of_kind("gemm")[0].job.threads == os.cpu_count()


def test_a_run_by_hand_and_its_planned_job_agree_on_threads_id_and_metrics(workflow_dir, capsys):
    """The same experiment by hand (torch's default threads) and as a planned job (its job's threads): where the
    counts differ the ids differ; with the planned count the id and every non-timing metric are the same."""
    overrides = [*TINY, "steps=2", "eval_interval=2", "study=train"]
    (workflow_dir / "conf/suite/one.yaml").write_text(
        "experiments:\n  train:\n    fixed: {" + ", ".join(o.replace("=", ": ") for o in overrides[:-1]) + "}\n"
    )
    (planned,) = build_plan("one").experiments
    assert planned.config["hardware"]["threads"] == 1
    out = workflow_dir / planned.result_path
    main(["job", "--id", planned.id, "--config", planned.config_json(), "--out", str(out), "--threads", "2"])
    by_job = read_result(out)
    assert by_job.provenance["torch_threads"] == 1  # the planned count, whatever the job was given

    by_hand_id, by_hand = _hand_run(["train", *overrides, "hardware.threads=1"], capsys)
    assert by_hand_id.rsplit("-", 1)[1] == planned.id.rsplit("-", 1)[1]
    assert _values(by_hand) == _values(by_job)

    torch.set_num_threads(2)
    default_id, default = _hand_run(["numerics", "n_values=4096", "row_size=64"], capsys)
    one_id, _ = _hand_run(["numerics", "n_values=4096", "row_size=64", "hardware.threads=1"], capsys)
    assert default.config["hardware"]["threads"] == 2 and default_id != one_id


# --- reports of failed runs --------------------------------------------------------------------------------


def _failed(study: str, kind: str) -> ResultRecord:
    record = _record(f"{kind}/{study}-failed", metrics=0)
    return replace(record, status="error", message=f"RuntimeError: {study} broke", config={"study": study, "seed": 0})


def test_every_report_product_shows_a_study_of_failed_runs_as_failed(tmp_path):
    from tradeoffs.report import FIGURES, TABLES, write_figure, write_table_file

    studies = sorted(
        {s for registry in (FIGURES, TABLES) for p in registry.values() for s in (*p.studies, *p.optional)}
    )
    paths = [tmp_path / f"{study}/result.json" for study in studies]
    for study, path in zip(studies, paths, strict=True):
        write_result(path, _failed(study, study))
    main(["collect", str(tmp_path / "t.parquet"), str(tmp_path / "t.csv"), *map(str, paths)])
    for name, product in TABLES.items():
        write_table_file(name, tmp_path / "t.parquet", tmp_path / f"{name}.csv")
        table = pd.read_csv(tmp_path / f"{name}.csv", index_col="id")
        study = product.studies[0]
        assert table.loc[study, "message"].startswith(f"no successful runs of study '{study}' (1 failed: ")
        assert set(table["status"]) == {"no successful runs", "error"} and f"{study}-failed" in " ".join(table.index)
    for name in FIGURES:
        write_figure(name, tmp_path / "t.parquet", tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000, name


def test_a_table_with_some_failed_runs_lists_them_beside_the_others(workflow_dir):
    from tradeoffs.report import write_figure, write_table_file

    good = workflow_dir / "results/numerics/good/result.json"
    run_experiment("numerics/good", load_experiment("numerics", ["n_values=4096", "row_size=64"]), good)
    bad = workflow_dir / "results/numerics/bad/result.json"
    write_result(bad, _failed("numerics", "numerics"))
    main(["collect", "t.parquet", "t.csv", str(good), str(bad)])
    write_table_file("numerics_qsnr", Path("t.parquet"), Path("qsnr.csv"))
    table = pd.read_csv("qsnr.csv", index_col=0)
    assert table.loc["numerics/numerics-failed", "status"] == "error"
    assert table.drop(index="numerics/numerics-failed").notna().any(axis=None)
    write_figure("numerics_qsnr", Path("t.parquet"), Path("qsnr.png"))


# --- training data too small, evaluation capped ------------------------------------------------------------


def test_a_split_too_small_at_run_time_names_the_data_keys(workflow_dir):
    """With the whole corpus (max_bytes 0) the split sizes are known only once it is read."""
    config = load_experiment("train", [*TINY, "steps=2", "eval_interval=2", "data.validation_fraction=0.000001"])
    record = run_experiment("train/small", config, workflow_dir / "results/train/small/result.json")
    assert record.status == "error"
    assert "data.validation_fraction=1e-06" in record.message and "validation split" in record.message
    assert "fewer than model.context_length + 1 = 33" in record.message


def test_eval_windows_beyond_the_split_are_a_recorded_warning(workflow_dir):
    overrides = [*TINY, "steps=2", "eval_interval=2", "data.max_bytes=20000", "eval_windows=100"]
    record = run_experiment("train/cap", load_experiment("train", overrides), workflow_dir / "results/t/result.json")
    assert record.status == "ok"
    assert "warning: eval_windows=100 capped at the 31 windows of the validation split" in record.message


# --- GEMM fractions of peak --------------------------------------------------------------------------------


def test_a_fraction_of_peak_above_one_is_flagged_invalid_not_drawn(workflow_dir):
    from tradeoffs.bench.hardware import peaks_for
    from tradeoffs.hardware import HardwareConfig
    from tradeoffs.report import write_figure, write_table_file

    peaks = peaks_for(HardwareConfig(), 1, {"cpu_mhz": 2000.0, "isa_flags": ["fma"]})
    assert peaks.clock == "nominal (no turbo)" and "no turbo" in peaks.source
    assert peaks.above_peak("fp32", 0.05) == "" and "above 100%" in peaks.above_peak("fp32", 0.07)

    config = load_experiment("gemm", ["shapes=[[64,64,64]]", "bench.min_time_s=0.01", "hardware.threads=1"])
    out = workflow_dir / "results/gemm/g/result.json"
    record = run_experiment("gemm/g", config, out)
    (pct,) = [m for m in record.metrics if m.name == "pct_of_peak"]
    assert pct.labels["peak_clock"] in ("nominal (no turbo)", "max (cpufreq)") and pct.labels["peak_valid"] == 1
    main(["collect", "t.parquet", "t.csv", str(out)])
    table = pd.read_parquet("t.parquet")
    table.loc[table["metric"] == "pct_of_peak", "value"] = 103.0  # as measured with boosting cores
    table.to_parquet("t.parquet")
    write_table_file("bench_gemm", Path("t.parquet"), Path("gemm.csv"))
    row = pd.read_csv("gemm.csv").iloc[0]
    assert pd.isna(row["pct_of_peak"]) and row["pct_above_peak"] == 103.0
    write_figure("bench_gemm", Path("t.parquet"), Path("gemm.png"))


# --- determinism -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_experiments_twice_give_bit_identical_metrics(workflow_dir):
    """A numerics run, a short training run and a capture of its checkpoint, twice each from scratch: every
    metric but the timing ones is bit-identical."""
    runs = []
    for attempt in ("a", "b"):
        numerics = load_experiment("numerics", ["format=nvfp4", "distribution=student_t3", "n_values=16384"])
        train_config = load_experiment("train", [*TINY, "steps=4", "eval_interval=2", "recipe=mxfp8"])
        train_out = workflow_dir / f"results/train/{attempt}/result.json"
        trained = run_experiment(f"train/{attempt}", train_config, train_out)
        capture = load_experiment("capture", ["format=int8", f"source_id=train/{attempt}"])
        capture.source = train_config
        captured = run_experiment(
            f"capture/{attempt}", capture, workflow_dir / f"results/capture/{attempt}/result.json", inputs=(train_out,)
        )
        numbers = run_experiment(f"numerics/{attempt}", numerics, workflow_dir / f"results/numerics/{attempt}/r.json")
        assert {trained.status, captured.status, numbers.status} == {"ok"}, (trained.message, captured.message)
        runs.append([_values(record) for record in (numbers, trained, captured)])
    assert runs[0] == runs[1]


# --- a kind that computes on the CPU under a GPU's entry ---------------------------------------------------


@pytest.mark.parametrize(("kind", "overrides"), [("numerics", ["n_values=4096", "row_size=64"]), ("lmul", [])])
def test_a_cpu_kind_under_a_gpu_entry_is_unsupported_not_a_cpu_result(workflow_dir, kind, overrides):
    config = load_experiment(kind, [*overrides, "hardware=h100_sxm"])
    record = run_experiment(f"{kind}/gpu", config, workflow_dir / f"results/{kind}/gpu/result.json")
    assert record.status == "unsupported" and not record.metrics
    assert f"hardware=h100_sxm (device cuda): the {kind} kind computes on the CPU only" in record.message
