"""Bad input at every entry point (a run by hand, a suite, `job`, `clean`, `collect`, `figure`/`table`, the
Snakefile's --config): each is refused before any work with a message naming the key, the bad value and the
valid choices (or the valid range), and no job starts (no results directory appears)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import TRAIN_TINY as TINY
from tradeoffs.__main__ import main

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _refused(arguments: list[str], fragments: list[str], root: Path) -> str:
    """Run the command line, check it exits with an error holding every fragment and that nothing ran."""
    with pytest.raises(SystemExit) as caught:
        main(arguments)
    message = str(caught.value)
    assert message.startswith("error: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert not (root / "results").exists(), "a job started"
    return message


# (command line of a run by hand, [key, value, valid choices or range])
BY_HAND = [
    (["numerics", "format=int9"], ["format=int9", "Available options in 'format'", "mxfp4"]),
    (["numerics", "distribution=cauchy"], ["distribution=cauchy", "gaussian", "student_t3"]),
    (["numerics", "n_valuez=1024"], ["n_valuez=1024", "valid keys:", "n_values"]),
    (["numerics", "+n_valuez=1024"], ["n_valuez", "1024", "valid keys:", "n_values"]),
    (["numerics", "+format.blok=16"], ["format.blok", "16", "valid keys:", "block_size"]),
    (["numerics", "format.block_sise=3"], ["format.block_sise=3", "valid keys:", "block_size"]),
    (["numerics", "n_values=lots"], ["n_values=lots", "could not be converted to Integer"]),
    (["numerics", "rotation=givens"], ["rotation", "'givens'", "none, hadamard, random_hadamard"]),
    (["numerics", "hardware=h100"], ["hardware=h100", "Available options in 'hardware'", "h100_sxm"]),
    (["numerics", "seed=-1"], ["seed", "-1", ">= 0"]),
    (["numerics", "hardware.threads=-2"], ["hardware.threads", "-2", ">= 0"]),
    (["numerics", "hardware.device=tpu"], ["hardware.device", "'tpu'", "cpu, cuda"]),
    (["numerics", "format.scale_rule=nearest"], ["format.scale_rule", "'nearest'", "absmax"]),
    (["lmul", "operands=uniform"], ["operands", "'uniform'", "loguniform, gaussian"]),
    (
        ["crossover", "format@int_format=mxint9"],
        ["format@int_format=mxint9", "Available options in 'format'", "mxint4"],
    ),
    (["crossover", "points=0"], ["points", "0", "> 0"]),
    (["qdq", "format=mxfp4", "log2_elements=40"], ["log2_elements", "40", "10..32"]),
    (["bandwidth", "log2_elements=5"], ["log2_elements", "5", "10..32"]),
    (["capture", "rotation=givens"], ["rotation", "'givens'", "none, hadamard"]),
    (["gemm", "dtype=fp128"], ["dtype", "'fp128'", "bf16", "int8"]),
    (["gemm", "bench=fast"], ["bench=fast", "Available options in 'bench'", "default"]),
    (["gemm", "bench.min_time_s=-1"], ["bench.min_time_s", "-1", "> 0"]),
    (["gemm", "repeat=5"], ["repeat=5", "[0, bench.repeats="]),
    (["inference", "model=gpt-tiny", "batch=4"], ["batch=4", "valid keys:", "batch_size"]),
    (["train", *TINY, "steps=10", "warmup_steps=50"], ["warmup_steps", "50", "<= steps=10"]),
    (["train", *TINY, "min_lr_fraction=1.5"], ["min_lr_fraction", "1.5", "[0, 1]"]),
    (["train", *TINY, "beta1=1.5"], ["beta1", "1.5", "[0, 1)"]),
    (["train", *TINY, "beta2=-0.1"], ["beta2", "-0.1", "[0, 1)"]),
    (["train", *TINY, "seed=-1"], ["seed", "-1", ">= 0"]),
    (["train", *TINY, "lr=0"], ["lr", "0", "> 0"]),
    (
        ["train", *TINY, "data.max_bytes=500"],
        ["data.max_bytes=500", "validation split 25 tokens", "context_length + 1"],
    ),
    (
        ["train", *TINY, "data.max_bytes=100000", "data.validation_fraction=0.0001"],
        ["data.validation_fraction", "0.0001", "validation split 10 tokens", "context_length + 1 = 33"],
    ),
    (["train", *TINY, "recipe=fp9"], ["recipe=fp9", "Available options in 'recipe'", "mxfp8"]),
    (["train", *TINY, "recipe.compute_dtype=fp64"], ["recipe.compute_dtype", "'fp64'", "fp32, bf16, fp16"]),
    (["train", *TINY, "model=gpt-2"], ["model=gpt-2", "Available options in 'model'", "gpt-tiny"]),
    (["train", *TINY, "data=imagenet"], ["data=imagenet", "Available options in 'data'", "tinyshakespeare"]),
    (["train", *TINY, "data.tokenizer=words"], ["data.tokenizer", "'words'", "bytes, bpe"]),
    (["train", *TINY, "lr=nan"], ["lr", "nan", "must be a finite number"]),
    (["train", *TINY, "grad_clip=inf"], ["grad_clip", "inf", "must be a finite number"]),
    (["numerics", "format.clip_ratio=nan"], ["format.clip_ratio", "nan", "must be a finite number"]),
    (["numerics", "hardware.memory_bandwidth_gbs=-inf"], ["hardware.memory_bandwidth_gbs", "-inf", "finite"]),
    (["numerics", f"study={'s' * 300}"], ["directory name", "bytes", "NAME_MAX = ", "shorten the study name"]),
]


@pytest.mark.parametrize(("arguments", "fragments"), BY_HAND, ids=lambda v: " ".join(v[1:]) if v[:1] else None)
def test_a_bad_override_of_a_run_by_hand_is_named(workflow_dir, arguments, fragments):
    _refused(arguments, fragments, workflow_dir)


# (suite file text, [key, value, valid choices])
SUITES = {
    "not_yaml": ("experiments:\n  numerics:\n    fixed: {n_values: [1, 2\n", ["not valid YAML", "line 4", "expected"]),
    "empty": ("experiments: {}\n", ["experiments", "no studies", "at least one"]),
    "excluded": (
        "experiments:\n  numerics:\n    sweep: {format: [int8]}\n    exclude: [{format: int8}]\n",
        ["exclude", "[{'format': 'int8'}]", "removes every point", "drop an exclusion"],
    ),
    "empty_axis": ("experiments:\n  numerics:\n    sweep: {format: []}\n", ["sweep {'format': []}", "an empty axis"]),
    "misspelt_field": ("experiments:\n  numerics:\n    sweeep: {format: [int8]}\n", ["sweeep", "valid keys:", "sweep"]),
    "misspelt_kind": ("experiments:\n  qsnr:\n    kind: numeric\n", ["experiment kind", "'numeric'", "numerics"]),
    "bad_value": ("experiments:\n  numerics:\n    fixed: {n_values: -5}\n", ["n_values", "-5", "> 0"]),
    "bad_key": ("experiments:\n  numerics:\n    fixed: {n_valuez: 5}\n", ["n_valuez=5", "valid keys:", "n_values"]),
    "source_id": (
        "experiments:\n  train: {fixed: {steps: 2}}\n  capture:\n    source: train\n"
        "    fixed: {source_id: ../../outside}\n",
        ["source_id", "'../../outside'", "source: <study>", "valid studies: train, capture"],
    ),
    "source_config": (
        "experiments:\n  train: {fixed: {steps: 2}}\n  capture:\n    source: train\n    fixed: {source.steps: 3}\n",
        ["source.steps", "3", "source: <study>"],
    ),
    "no_source": ("experiments:\n  capture:\n    fixed: {format: int8}\n", ["source", "capture", "source: <study>"]),
    "unknown_source": (
        "experiments:\n  capture:\n    source: trian\n",
        ["source 'trian'", "no planned experiment", "earlier in the suite"],
    ),
    "exclude_not_axis": (
        "experiments:\n  numerics:\n    sweep: {format: [int8]}\n    exclude: [{rotation: none}]\n",
        ["exclude", "rotation", "not sweep axes", "format"],
    ),
    "zip_lengths": (
        "experiments:\n  numerics:\n    zip: {format: [int8, nvfp4], rotation: [none]}\n",
        ["zip", "[1, 2]"],
    ),
    "nan_value": ("experiments:\n  numerics:\n    fixed: {format.clip_ratio: .nan}\n", ["clip_ratio", "nan", "finite"]),
    "long_study": (
        f"experiments:\n  {'q' * 300}:\n    kind: numerics\n",
        ["study 'qqq", "is 3", "bytes", "NAME_MAX = ", "shorten the study name or its swept values"],
    ),
}


@pytest.mark.parametrize("name", SUITES)
def test_a_bad_suite_is_named_before_planning_ends(workflow_dir, name):
    text, fragments = SUITES[name]
    (workflow_dir / "conf/suite" / f"{name}.yaml").write_text(text)
    message = _refused(["plan", "--suite", name], fragments, workflow_dir)
    assert f"suite '{name}'" in message


def test_an_unknown_suite_lists_the_suites(workflow_dir):
    _refused(["plan", "--suite", "smoek"], ["suite", "'smoek'", "valid choices:", "smoke"], workflow_dir)


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        ({"kind": "numeric"}, ["experiment kind", "'numeric'", "numerics"]),
        ({"kind": "numerics", "n_valuez": 5}, ["n_valuez", "valid keys:", "n_values"]),
        ({"kind": "numerics", "rotation": "givens"}, ["rotation", "'givens'", "none, hadamard"]),
        ({"kind": "train", "lr": float("nan")}, ["lr", "nan", "must be a finite number"]),
        ({"kind": "numerics", "format": {"clip_ratio": float("inf")}}, ["format.clip_ratio", "inf", "finite"]),
    ],
)
def test_job_names_a_bad_resolved_config(workflow_dir, config, fragments):
    out = workflow_dir / "results/numerics/x/result.json"
    arguments = ["job", "--id", "numerics/x", "--config", json.dumps(config), "--out", str(out)]
    _refused(arguments, fragments, workflow_dir)


def test_clean_names_a_bad_status(workflow_dir):
    _refused(
        ["clean", "--status", "failed"],
        ["--status", "'failed'", "ok, diverged, unsupported, invalid, error"],
        workflow_dir,
    )


def test_collect_without_result_files_keeps_the_table(workflow_dir):
    _refused(["collect", "results.parquet", "results.csv"], ["collect", "no result files", "RESULT.json"], workflow_dir)
    assert not (workflow_dir / "results.parquet").exists()


def test_an_unknown_product_lists_the_products(workflow_dir):
    (workflow_dir / "t.parquet").write_bytes(b"")
    for command, name in (("figure", "train_los"), ("table", "train_recipe")):
        _refused([command, name, "t.parquet", "out"], [command, f"'{name}'", "valid choices:", "train_"], workflow_dir)


def test_reference_and_claims_name_their_bad_arguments(workflow_dir):
    _refused(["reference", "H100 SXM"], ["reference name", "'H100 SXM'", "lower-case letters, digits"], workflow_dir)
    _refused(["claims", "nope.parquet"], ["results table", "nope.parquet", "not found", "collect"], workflow_dir)


def test_a_misspelt_workflow_config_key_is_named(workflow_dir):
    """`--config suit=smoke` ran the default suite: the Snakefile reads only `suite`."""
    done = subprocess.run([SNAKEMAKE, "-n", "--config", "suit=smoke"], cwd=workflow_dir, capture_output=True, text=True)
    assert done.returncode != 0
    assert "--config suit=smoke: unknown key 'suit'; valid keys: suite" in done.stdout + done.stderr
    assert not (workflow_dir / "results").exists()


def _tidy_table(path: Path, kind: str, metric: str) -> Path:
    """A one-row table with the tidy table's columns (tradeoffs.results.TABLE_COLUMNS)."""
    row = {"id": f"{kind}/x", "kind": kind, "status": "ok", "message": "", "metric": metric, "value": 1.0, "unit": ""}
    pd.DataFrame([row]).to_parquet(path)
    return path


def _malformed_tables(directory: Path) -> dict[str, tuple[Path, list[str]]]:
    """Files given where the tidy table goes, each with the fragments its error must hold."""
    columns = directory / "columns.parquet"
    pd.DataFrame({"loss": [1.0], "step": [2]}).to_parquet(columns)
    renamed = directory / "renamed.parquet"
    renamed.write_text("id,kind,status\nnumerics/x,numerics,ok\n")
    empty = directory / "empty.parquet"
    empty.write_bytes(b"")
    return {
        "no tidy columns": (columns, [str(columns), "lacks the tidy table's column(s) id, kind, status", "loss, step"]),
        "CSV renamed .parquet": (renamed, [str(renamed), "is not a Parquet file (it reads as CSV text)"]),
        "empty file": (empty, [str(empty), "is an empty file (0 bytes)"]),
    }


REPORT_COMMANDS = [
    ["claims", "{table}", "--md", "claims.md"],
    ["reference", "other_cpu", "--results", "{table}"],
    ["figure", "train_loss", "{table}", "loss.png"],
    ["table", "train_recipes", "{table}", "recipes.csv"],
]


@pytest.mark.parametrize("case", ["no tidy columns", "CSV renamed .parquet", "empty file"])
@pytest.mark.parametrize("command", REPORT_COMMANDS, ids=lambda c: c[0])
def test_a_malformed_results_table_is_named_with_what_is_wrong(workflow_dir, command, case):
    path, fragments = _malformed_tables(workflow_dir)[case]
    message = _refused([a.format(table=path) for a in command], ["results table", *fragments], workflow_dir)
    assert "tradeoffs collect" in message
    assert not any((workflow_dir / name).exists() for name in ("claims.md", "loss.png", "recipes.csv"))


@pytest.mark.parametrize("case", ["no tidy columns", "CSV renamed .parquet", "empty file"])
def test_a_malformed_reference_set_is_named(workflow_dir, case):
    table = _tidy_table(workflow_dir / "t.parquet", "gemm", "tflops")
    path, fragments = _malformed_tables(workflow_dir)[case]
    _refused(["claims", str(table), "--reference", str(path)], ["--reference: reference set", *fragments], workflow_dir)


def test_claims_names_a_missing_reference_set(workflow_dir):
    table = _tidy_table(workflow_dir / "t.parquet", "gemm", "tflops")
    missing = workflow_dir / "reports/reference/h100.parquet"
    _refused(
        ["claims", str(table), "--md", "claims.md", "--reference", str(missing)],
        ["--reference: reference set", str(missing), "not found", "sets in"],
        workflow_dir,
    )
    assert not (workflow_dir / "claims.md").exists()


def test_an_output_path_of_an_unknown_format_lists_the_valid_ones(workflow_dir):
    table = _tidy_table(workflow_dir / "t.parquet", "train", "loss")
    _refused(
        ["figure", "train_loss", str(table), "loss.pnj"],
        ["figure output loss.pnj", "unknown image extension '.pnj'", "valid extensions:", "png", "svg", "pdf"],
        workflow_dir,
    )
    _refused(["table", "train_recipes", str(table), "recipes.md"], ["table output recipes.md", ".csv"], workflow_dir)
    assert not list(workflow_dir.glob("loss.*")) and not list(workflow_dir.glob("recipes.*"))


@pytest.mark.parametrize("threads", ["-3", "0"])
def test_job_refuses_a_thread_count_below_one(workflow_dir, threads):
    out = workflow_dir / "results/numerics/x/result.json"
    config = json.dumps({"kind": "numerics"})
    arguments = ["job", "--id", "numerics/x", "--config", config, "--out", str(out), "--threads", threads]
    _refused(arguments, ["--threads", f"got {threads}", ">= 1"], workflow_dir)


@pytest.mark.parametrize("form", ["../outside", "{outside}", "smoke.yaml", "../suite/smoke"])
def test_a_suite_is_only_a_file_of_conf_suite(workflow_dir, form):
    """A suite named by a path read a YAML file anywhere and put the plan cache beside it."""
    outside = workflow_dir / "conf/outside.yaml"
    outside.write_text("experiments:\n  numerics: {}\n")
    name = form.format(outside=outside)
    for command in (["plan", "--suite", name], ["clean", "--status", "error", "--suite", name]):
        _refused(command, [f"unknown suite '{name}'", "valid choices:", "smoke", "conf/suite"], workflow_dir)
    assert not (workflow_dir / ".snakemake").exists()


def test_the_workflow_refuses_a_suite_outside_conf_suite(workflow_dir):
    """`--config suite=../../x` reached a suite outside conf/suite/ and wrote the plan cache outside the project."""
    (workflow_dir.parent / "outside.yaml").write_text("experiments:\n  numerics: {}\n")
    done = subprocess.run(
        [SNAKEMAKE, "-n", "--config", "suite=../../../outside"], cwd=workflow_dir, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "unknown suite '../../../outside'; valid choices:" in done.stdout + done.stderr
    assert not (workflow_dir / "results").exists()
    assert not list(workflow_dir.parent.glob("plan-*.json")) and not list(workflow_dir.parent.rglob("outside-*.json"))


def test_an_id_may_use_every_byte_the_file_system_allows_and_no_more(tmp_path):
    import os

    from tradeoffs.errors import ConfigError
    from tradeoffs.pipeline.plan import check_id_length, name_max

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    assert name_max(tmp_path / "results/not/made/yet") == limit
    check_id_length(f"numerics/{'a' * limit}", tmp_path)
    with pytest.raises(ConfigError, match=f"is {limit + 1} bytes, .* \\(NAME_MAX = {limit} bytes in {tmp_path}\\)"):
        check_id_length(f"numerics/{'a' * (limit + 1)}", tmp_path)
