"""The quant kind on a real trained model: a gpt-tiny trained a few steps through the runner, then the kind through
the runner for RTN, GPTQ and LLM.int8() with the train result as its planned input; its metrics are the
library's on the same checkpoint and tokens, the report products draw from the collected table, the claims read
the runs, every conf/method/ option is its library config, and bad settings fail before any checkpoint is read."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from conftest import QUANT_SMALL, ROOT, TRAIN_ID, TRAIN_TINY, copy_workflow, train_tiny_source
from tradeoffs.data import load_dataset
from tradeoffs.errors import ConfigError
from tradeoffs.evaluate import bits_per_weight, compare, get_protocol
from tradeoffs.identity import plain
from tradeoffs.kinds import get_kind
from tradeoffs.kinds.base import Job
from tradeoffs.kinds.quant import build_method, check_source
from tradeoffs.kinds.sources import load_trained_model
from tradeoffs.pipeline.config import config_hash, load_experiment, to_typed
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.quant import METHODS, get_spec, method_config, quantize_
from tradeoffs.report import FIGURES, TABLES, write_figure, write_table_file
from tradeoffs.report.claims import evaluate_claims, load_claims
from tradeoffs.report.claims.verdicts import NOT_IN_SUITE
from tradeoffs.results import collect

RUNS = {  # id -> study and overrides
    "quant/rtn": ("gptq", ["method=rtn", "method.spec.weight_granularity=group", "method.spec.group_size=32"]),
    "quant/gptq": ("gptq", ["method=gptq", "method.spec.weight_granularity=group", "method.spec.group_size=32"]),
    "quant/llm_int8": ("outliers", ["method=llm_int8", "method.spec.name=W8A8", "outlier_scale=8"]),
    "quant/int8_tensor": (
        "outliers",
        ["method.spec.name=W8A8", "method.spec.weight=int8", "method.spec.activation=int8_tensor", "outlier_scale=8"],
    ),
}
PRODUCTS = ["quant_weight_only", "quant_outliers", "quant_pareto"]
TABLE_PRODUCTS = ["quant_weight_only", "quant_outliers", "quant_shootout"]


def _quant(study: str, overrides: list[str], train):
    config = load_experiment("quant", [f"study={study}", *QUANT_SMALL, *overrides])
    config.source = train
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(root, train config, train result path, {id: (config, record)}, the tidy table)."""
    root = copy_workflow(tmp_path_factory.mktemp("quant"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("TRADEOFFS_ROOT", raising=False)
        train, source = train_tiny_source(root)
        done, paths = {}, [source]
        for run_id, (study, overrides) in RUNS.items():
            config = _quant(study, overrides, train)
            out = root / f"results/{run_id}/result.json"
            done[run_id] = (config, run_experiment(run_id, config, out, job_threads=1, inputs=(source,)))
            paths.append(out)
        yield root, train, source, done, collect(paths)


def _metrics(record) -> dict[str, float]:
    return {m.name: m.value for m in record.metrics}


def test_the_kind_records_the_librarys_scores_on_the_checkpoint(runs):
    _, train, source, done, _ = runs
    config, record = done["quant/rtn"]
    assert record.status == "ok", record.message
    got = _metrics(record)
    assert got["loss"] == pytest.approx(-got["log_likelihood"] / got["tokens"])
    assert got["perplexity"] == pytest.approx(math.exp(got["loss"]))
    assert got["loss_change"] == pytest.approx(got["loss"] - got["reference_loss"])
    assert got["bits_per_byte"] == pytest.approx(got["loss"] / math.log(2))  # byte tokens
    assert got["tokens"] == 1024 and got["calibration_tokens"] == 0
    assert {m.labels.get("protocol") for m in record.metrics if m.name == "loss"} == {"rolling-32-prefix0"}

    model = load_trained_model(Job(source.parent, (source,)), train, TRAIN_ID).model
    reference = load_trained_model(Job(source.parent, (source,)), train, TRAIN_ID).model
    spec = get_spec("W4A16", weight_granularity="group", group_size=32)
    quantize_(model, method_config("rtn", spec=spec))
    tokens = load_dataset(train.data).splits["validation"][:1024]
    expected = compare(model, reference, tokens, get_protocol("rolling", 32), batch_size=config.batch_size)
    assert got["log_likelihood"] == pytest.approx(expected.model.log_likelihood, rel=1e-9)
    assert got["kl"] == pytest.approx(expected.kl, rel=1e-6, abs=1e-12)
    assert got["top1_agreement"] == expected.top1_agreement
    assert got["bits_per_weight"] == bits_per_weight(model) == 4 + (32 + 4) / 32  # FP32 scale, 4-bit zero point
    assert got["memory_bytes"] < got["reference_memory_bytes"]


def test_every_method_ran_and_calibrated_as_configured(runs):
    *_, done, _ = runs
    for run_id, (_, record) in done.items():
        assert record.status == "ok", (run_id, record.message)
        got = _metrics(record)
        assert 0 <= got["top1_agreement"] <= 1 and got["kl"] >= 0, run_id
        assert got["quantized_layers"] == 8, run_id  # qkv, proj, up, down in each of 2 blocks
    assert _metrics(done["quant/gptq"][1])["calibration_tokens"] == 4 * 32
    assert _metrics(done["quant/llm_int8"][1])["bits_per_weight"] > 16  # INT8 + the kept 16-bit copy
    config = done["quant/llm_int8"][0]
    assert (config.method.spec.weight, config.method.spec.activation) == ("int8", "int8")  # the implied spec


def test_the_products_draw_from_the_collected_table(runs, tmp_path):
    *_, table = runs
    shootout = table.assign(**{"cfg.study": table["cfg.study"].replace({"gptq": "ptq", "outliers": "ptq"})})
    shootout = shootout[shootout["kind"] == "quant"].assign(id=lambda f: f["id"] + "-ptq")
    parquet = tmp_path / "results.parquet"
    pd.concat([table, shootout], ignore_index=True).to_parquet(parquet, index=False)
    for name in PRODUCTS:
        assert name in FIGURES
        write_figure(name, parquet, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
    for name in TABLE_PRODUCTS:
        write_table_file(name, parquet, tmp_path / f"{name}.csv")
        lines = (tmp_path / f"{name}.csv").read_text().splitlines()
        assert len(lines) >= 3, name
    assert TABLES["quant_shootout"].studies == ("ptq",)
    shoot = (tmp_path / "quant_shootout.csv").read_text()
    assert "LLM.int8()" in shoot and "RTN W8A8 [int8 | int8_tensor]" in shoot


def test_the_claims_read_the_runs(runs):
    *_, table = runs
    claims = {c.id: c for c in load_claims()}
    (verdict,) = evaluate_claims(table, [claims["outliers-int8"]])
    parts = {part.part: part.decision for part in verdict.parts}
    assert parts["llm-int8-lossless"].reason != NOT_IN_SUITE
    assert parts["llm-int8-lossless"].run_ids == ("quant/llm_int8",)
    assert parts["per-tensor-degrades"].run_ids == ("quant/int8_tensor",)


def _bad(overrides: list[str], train=None):
    config = load_experiment("quant", [*QUANT_SMALL, *overrides])
    if train is not None:
        config.source = train
    return config


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["method=gptq", "method.spec.name=W4A4"], r"W4A4 quantizes activations; GPTQ is a weight-only.*W4A16"),
        (["method=awq"], r"method=awq: .*Could not find 'method/awq' Available options in 'method':.* gptq .* rtn"),
        (["method.name=gptq"], r"method.name: 'gptq' names another method .*\(rtn\).*method=<name>"),
        (
            ["method.gptq.act_order=true"],
            r"method.gptq.act_order=true: .*Key 'gptq' not in 'RTNConfig'.*valid keys: name",
        ),
        (["method=gptq", "method.gptq.blocksize=3"], r"Key 'blocksize' not in 'GPTQ'.*valid keys: block_size, damp"),
        (["method.spec.name=W2A16"], r"method.spec: invalid value 'W2A16'; valid choices: W4A16, W3A16"),
        (["method.spec.weight=int4x"], r"method.spec.weight: unknown format 'int4x'"),
        (["method=smoothquant", "method.spec.name=W4A16"], r"smoothquant.spec: .* Valid choices: W8A8"),
        (
            ["method=llm_int8", "method.spec.activation=int8_tensor"],
            r"LLM.int8\(\) implies vector-wise INT8.*Valid choices: W8A8 with weight=int8, activation=int8",
        ),
        (["protocol=strided"], r"protocol: invalid value 'strided'; valid choices: rolling, sliding"),
        (["outlier_scale=0.5"], r"outlier_scale: must be >= 1"),
    ],
)
def test_bad_settings_are_named_when_configured(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_experiment("quant", overrides)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["method.spec.weight_granularity=group", "method.spec.group_size=48"], r"group/block size 48.*dividing \[64"),
        (
            ["method=smoothquant", "method.spec.name=W8A8", "method.layers=[blocks.0.attn.proj]"],
            r"no preceding norm.*valid choices: blocks.0.attn.qkv",
        ),
        (["calibration_length=64"], r"calibration_length: 64 exceeds the source model's context length 32"),
    ],
)
def test_settings_the_source_cannot_take_fail_when_planned_and_before_any_checkpoint(overrides, match, tmp_path):
    train = load_experiment("train", TRAIN_TINY)
    config = _bad(overrides, train)
    with pytest.raises(ConfigError, match=match):
        get_kind("quant").resources(config)  # the planner sizes every job once its source is known
    with pytest.raises(ConfigError, match=match):
        get_kind("quant").run(config, Job(tmp_path))  # no input: reading a checkpoint would fail otherwise


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["method=gptq", "calibration_samples=1000000"], r"calibration: 1000000 samples of 32 tokens need"),
        (["method=gptq", "calibration_split=validation", "eval_tokens=0"], r"overlap the evaluation tokens"),
        (["eval_tokens=100000000"], r"eval_tokens: 100000000 exceeds the .* tokens of split 'validation'"),
    ],
)
def test_data_the_splits_cannot_give_fails_before_any_checkpoint(overrides, match, tmp_path):
    config = _bad(overrides, load_experiment("train", TRAIN_TINY))
    with pytest.raises(ConfigError, match=match):
        get_kind("quant").run(config, Job(tmp_path))


def test_a_check_on_the_source_builds_no_weights():
    config = _bad([], load_experiment("train", TRAIN_TINY))
    assert check_source(config).spec.name == "W4A16"
    assert torch.get_default_device().type == "cpu"  # the weightless copy's meta device does not leak


METHOD_OPTIONS = sorted((ROOT / "conf" / "method").glob("*.yaml"))


@pytest.mark.parametrize("path", METHOD_OPTIONS, ids=lambda p: p.stem)
def test_every_method_option_is_its_library_config(path):
    config = load_experiment("quant", [f"method={path.stem}"])
    method = build_method(config.method)
    assert type(method) is METHODS[config.method.name]
    if path.stem in METHODS:  # a method's own file: the library config's defaults, spec included
        assert config.method.name == path.stem
        assert method == method_config(path.stem)
    else:  # a preset over a method's file: its name and what it changes
        assert path.stem.startswith(config.method.name) and method != method_config(config.method.name)
    read_back = to_typed(plain(config))  # as a job reads its resolved config
    assert read_back.method == config.method and config_hash(read_back) == config_hash(config)


def test_every_registered_method_has_its_option():
    assert set(METHODS) <= {path.stem for path in METHOD_OPTIONS}


def test_a_resolved_config_read_back_names_a_bad_method_key():
    resolved = plain(load_experiment("quant", ["method=gptq"]))
    resolved["method"]["gptq"]["blocksize"] = 3
    with pytest.raises(ConfigError, match=r"method.gptq.blocksize: .*valid keys: block_size"):
        to_typed(resolved)
    resolved["method"] = {"name": "awq"}
    with pytest.raises(ConfigError, match=r"method.name: invalid value 'awq'; valid choices: rtn, gptq"):
        to_typed(resolved)
