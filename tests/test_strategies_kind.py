"""The strategies kind through the runner on tiny bases, its report products from the collected table, the
model-scaling claim on those runs."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pandas as pd
import pytest

from tradeoffs.errors import ConfigError
from tradeoffs.models.scaling import scale
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report import FIGURES, TABLES
from tradeoffs.report.claims import evaluate_claims, load_claims
from tradeoffs.results import collect

TINY = [
    "model.d_model=32",
    "model.d_ff=64",
    "model.context_length=16",
    "cnn.image_size=8",
    "cnn.width=8",
    "cnn.depth=4",
    "cnn.n_stages=2",
    "batch_size=2",
    "hardware.threads=1",
    "bench.warmup=1",
    "bench.warmup_time_s=0",
    "bench.min_runs=3",
    "bench.min_time_s=0.001",
]
STRATEGIES = {"gpt": ("width", "depth", "context", "compound"), "cnn": ("width", "depth", "resolution", "compound")}
FACTORS = (1, 2, 4)


@pytest.fixture(scope="module")
def strategy_table(tmp_path_factory) -> pd.DataFrame:
    """Every strategy of both bases at three factors, run through the runner and collected."""
    root = tmp_path_factory.mktemp("strategies")
    paths = []
    for base, strategies in STRATEGIES.items():
        composed = load_experiment("strategies", [*TINY, f"base={base}", "study=strategies"])
        for strategy, factor in itertools.product(strategies, FACTORS):
            name = f"{base}-{strategy}-{factor}"
            path = root / name / "result.json"
            run_experiment(f"strategies/{name}", replace(composed, strategy=strategy, factor=factor), path)
            paths.append(path)
    return collect(paths)


def _value(table: pd.DataFrame, run: str, metric: str) -> float:
    return table[(table["id"] == f"strategies/{run}") & (table["metric"] == metric)]["value"].item()


def test_runs_record_the_counts_of_the_scaled_model_and_a_step_time(strategy_table):
    assert set(strategy_table["status"]) == {"ok"}, strategy_table.groupby("id")["message"].first()
    config = load_experiment("strategies", [*TINY, "base=cnn", "strategy=resolution", "factor=4"])
    scaled = scale(config.cnn, "resolution", 4.0)
    assert _value(strategy_table, "cnn-resolution-4", "flops") == scaled.counts.flops
    assert _value(strategy_table, "cnn-resolution-4", "activations") == scaled.counts.activations
    assert _value(strategy_table, "cnn-resolution-4", "flops_factor") == pytest.approx(4, rel=0.15)
    rows = strategy_table[
        (strategy_table["id"] == "strategies/gpt-width-4") & (strategy_table["metric"] == "axis_size")
    ]
    assert dict(zip(rows["label.axis"], rows["value"], strict=True))["width"] > 32
    times = strategy_table[strategy_table["metric"] == "time_median_s"]
    assert len(times) == 24 and (times["value"] > 0).all()


def test_exponent_table_has_the_papers_activation_exponents_within_its_intervals(strategy_table):
    table = TABLES["scaling_strategies"].make(strategy_table)
    activations = table.xs("activations", level="quantity")
    for base in ("GPT", "CNN"):
        width, depth = activations.loc[(base, "width")], activations.loc[(base, "depth")]
        assert width["interval_low"] < width["exponent"] < width["interval_high"]
        assert 0.4 < width["exponent"] < 0.6 and width["paper"] == 0.5
        assert 0.9 < depth["exponent"] < 1.1
        assert width["exponent"] < activations.loc[(base, "compound"), "exponent"] < depth["exponent"]
    assert set(table["status"]) == {"ok"} and (table["runs"] == len(FACTORS)).all()


def test_figure_draws_activations_and_step_time_per_base_log_log(strategy_table, tmp_path):
    figure = FIGURES["scaling_strategies"].make(strategy_table)
    axes = figure.axes
    assert len(axes) == 4
    for axis in axes:
        assert axis.get_xscale() == axis.get_yscale() == "log"
        assert "FLOP" in axis.get_xlabel() and axis.get_ylabel()
        assert len(axis.get_legend().get_texts()) == 4
    figure.savefig(tmp_path / "strategies.png")


def test_the_model_scaling_claim_is_decided_per_base_from_the_counts(strategy_table):
    (claim,) = [c for c in load_claims() if c.id == "model-scaling"]
    (verdict,) = evaluate_claims(strategy_table, [claim])
    decided = {p.part: p.decision for p in verdict.parts}
    for part in ("width", "depth", "compound"):
        assert decided[part].verdict == "confirmed", decided[part]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["strategy=resolution"], "strategy: invalid value 'resolution'"), (["base=vit"], "base: invalid value")],
)
def test_bad_strategy_or_base_names_the_choices(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("strategies", overrides)
