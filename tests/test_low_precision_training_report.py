"""The low-precision training products: the QAT-fraction curves and best-fraction table, the divergence rate
against bits and the optimizer-state results, on tidy rows with planted answers and on real tiny runs."""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from conftest import TRAIN_TINY
from tradeoffs.fit import FitOptions
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report import FIGURES, TABLES
from tradeoffs.report import low_precision_training as report
from tradeoffs.results import collect


def _run(study: str, run_id: str, status: str, config: dict, metrics: dict) -> list[dict]:
    """The tidy rows collect() gives one train run: one per metric, the config as cfg.* columns."""
    common = {"id": f"train/{run_id}", "kind": "train", "status": status, "message": "", "cfg.study": study}
    common |= {f"cfg.{key}": value for key, value in config.items()} | {"cfg.model.name": "gpt-20k"}
    sizes = {"training_tokens": config["steps"] * 512.0}
    return [{**common, "metric": name, "value": float(value)} for name, value in {**sizes, **metrics}.items()]


# Planted per (weights, steps): the QAT start fraction with the lowest loss.
PLANTED_START = {("int8", 60): 1.0, ("int8", 120): 0.75, ("int4", 60): 0.75, ("int4", 120): 0.5, ("int2", 60): 0.5}
STARTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def qat_rows(noise: float = 0.002) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for (bits, steps), best in PLANTED_START.items():
        for start, seed in itertools.product(STARTS, (0, 1)):
            loss = 2.0 + 0.5 * (start - best) ** 2 + (0.3 if bits == "int2" else 0.0) + rng.normal(0, noise)
            config = {
                "recipe.quant_start_fraction": start,
                "recipe.weight_format.element": bits,
                "steps": steps,
                "seed": seed,
                "lr": 0.003,
            }
            metrics = {"final_val_loss": loss, "final_val_loss_unquantized": 1.9}
            rows += _run("qat_fraction", f"q-{bits}-{steps}-{start}-{seed}", "ok", config, metrics)
    config = {"recipe.quant_start_fraction": 0.0, "recipe.weight_format.element": "int2", "steps": 60, "seed": 2}
    rows += _run("qat_fraction", "q-int2-diverged", "diverged", {**config, "lr": 0.003}, {"diverged_step": 7})
    return pd.DataFrame(rows)


def test_the_qat_table_finds_the_planted_best_fraction_and_counts_diverged_runs():
    table = TABLES["qat_fraction"].make(qat_rows(), options=FitOptions(n_bootstrap=50))
    assert list(table.index.get_level_values("weights").unique()) == ["int8", "int4", "int2"]  # most bits first
    for (bits, steps), start in PLANTED_START.items():
        row = table.loc[(bits, steps)]
        assert row["status"] == "ok" and row["best_fraction"] == pytest.approx(1 - start)  # QAT fraction = 1 - start
        assert row["best_low"] <= row["best_fraction"] <= row["best_high"]
        assert row["gain_over_ptq"] >= 0 and row["gain_over_full_qat"] >= 0 and row["seed_noise_sd"] < 0.01
    assert table.loc[("int8", 60), "gain_over_ptq"] == 0  # PTQ is the best there: no gain over it
    assert table.loc[("int2", 60), ["runs", "diverged"]].tolist() == [11, 1]


def test_the_qat_figure_draws_a_column_per_budget_and_a_line_per_width():
    rows = qat_rows()
    figure = FIGURES["qat_fraction"].make(rows)
    losses = [axis for axis in figure.axes if "tokens" in axis.get_title()]
    differences = [axis for axis in figure.axes if axis.get_xlabel().startswith("QAT start")]
    assert len(losses) == len(differences) == 2
    labels = [line.get_label() for line in losses[0].get_lines()]
    widths = ["int8 weights (2 seeds)", "int4 weights (2 seeds)", "int2 weights (3 seeds)"]
    assert labels == [*widths, "full precision (no quantization)"]
    assert "1 diverged" in losses[0].get_title() and "diverged" not in losses[1].get_title()
    line = losses[1].get_lines()[1]  # int4 at 120 steps: the mean over seeds, lowest at start 0.5
    assert line.get_xdata()[np.argmin(line.get_ydata())] == 0.5
    # below: minus the full-precision loss of the same seed (1.9 in every planted run)
    np.testing.assert_allclose(differences[1].get_lines()[1].get_ydata(), line.get_ydata() - 1.9)
    plt.close(figure)


def stability_rows() -> pd.DataFrame:
    """8 formats x 2 learning rates x 2 seeds: the diverged count planted per format (at the high lr first)."""
    planted = {"e8m7": 0, "e8m5": 0, "e8m3": 1, "e8m2": 2, "e8m1": 4, "e6m3": 1, "e5m3": 2, "e4m3": 3}
    rows = []
    for element, diverged in planted.items():
        for i, (lr, seed) in enumerate(itertools.product((0.03, 0.003), (0, 1))):
            config = {"recipe.weight_format.element": element, "lr": lr, "seed": seed, "steps": 60}
            if i < diverged:
                rows += _run("stability", f"s-{element}-{i}", "diverged", config, {"diverged_step": 10 + i})
            else:
                rows += _run("stability", f"s-{element}-{i}", "ok", config, {"final_val_loss": 2.5 - 0.01 * i})
    return pd.DataFrame(rows)


def test_the_stability_table_has_each_series_rates_and_trend():
    table = TABLES["stability_divergence"].make(stability_rows())
    mantissa, exponent = table.loc["mantissa"], table.loc["exponent"]
    assert list(mantissa.index) == ["e8m7", "e8m5", "e8m3", "e8m2", "e8m1"]
    assert list(exponent.index) == ["e8m3", "e6m3", "e5m3", "e4m3"]  # E8M3 heads both series
    assert mantissa["diverged_share"].tolist() == [0, 0, 0.25, 0.5, 1.0]
    assert exponent["diverged"].tolist() == [1, 1, 2, 3] and (exponent["runs"] == 4).all()
    assert mantissa.loc["e8m1", "median_diverged_step"] == 11.5
    assert math.isnan(mantissa.loc["e8m1", "loss_not_diverged"])  # every E8M1 run diverged
    assert (mantissa["share_low"] <= mantissa["diverged_share"]).all()
    assert (mantissa["diverged_share"] <= mantissa["share_high"]).all()
    assert mantissa["trend_z"].iloc[0] < -2 and mantissa["trend_p"].iloc[0] < 0.05  # fewer bits, more divergence


def test_the_stability_figure_draws_rates_and_losses_per_series():
    figure = FIGURES["stability_divergence"].make(stability_rows())
    top = [axis for axis in figure.axes if axis.get_ylabel() == "diverged share of runs"]
    assert [axis.get_title().split(" (")[0] for axis in top] == ["fewer mantissa bits", "fewer exponent bits"]
    assert "trend z = " in top[0].get_title()
    plt.close(figure)


def test_a_non_minifloat_format_in_the_stability_study_is_named():
    rows = stability_rows()
    rows.loc[rows["id"] == "train/s-e8m7-0", "cfg.recipe.weight_format.element"] = "int4"
    with pytest.raises(ValueError, match="'int4' is not a minifloat"):
        TABLES["stability_divergence"].make(rows)


def optimizer_rows() -> pd.DataFrame:
    rows = []
    for (name, expansion, loss, size), seed in itertools.product(
        (("fp32", False, 2.0, 8.0), ("fp8_states", True, 2.01, 2.1), ("fp8_states_absmax", False, 2.1, 2.06)), (0, 1)
    ):
        config = {"recipe.name": name, "recipe.state_range_expansion": expansion, "seed": seed, "steps": 120}
        metrics = {"final_val_loss": loss + 0.02 * seed, "optimizer_state_bytes_per_parameter": size}
        rows += _run("optimizer_fp8", f"o-{name}-{seed}", "ok", config, metrics)
    return pd.DataFrame(rows)


def test_the_optimizer_table_gives_each_seed_against_the_fp32_states_of_that_seed():
    table = TABLES["optimizer_fp8"].make(optimizer_rows())
    assert list(table.index.get_level_values(0).unique()) == list(report.STATE_LABELS.values())
    expanded = table.loc["FP8 states, range expansion"]
    assert expanded.loc["0", "loss_vs_fp32_states"] == pytest.approx(2.01 / 2.0)
    assert expanded.loc["1", "loss_vs_fp32_states"] == pytest.approx(2.03 / 2.02)
    assert expanded.loc["mean", "final_val_loss"] == pytest.approx(2.02)
    assert table.loc[("FP32 states", "mean"), "state_bytes_per_parameter"] == 8.0
    figure = FIGURES["optimizer_fp8"].make(optimizer_rows())
    ticks = [t.get_text().replace("\n", " ") for t in figure.axes[0].get_xticklabels()]
    assert ticks == list(report.STATE_LABELS.values())
    plt.close(figure)


def test_the_products_are_registered_under_their_papers():
    for name in ("qat_fraction", "stability_divergence", "optimizer_fp8"):
        assert FIGURES[name].target.startswith("tradeoffs.report.low_precision_training:")
        assert TABLES[name].target.startswith("tradeoffs.report.low_precision_training:")
        assert FIGURES[name].paper == TABLES[name].paper
    assert FIGURES["optimizer_fp8"].paper == FIGURES["memory_fp8_activations"].paper == "COAT (2025)"


def test_real_runs_give_the_products_their_columns(workflow_dir):
    """A PTQ run (QAT start 1), a diverged minifloat run and an FP8-state run, trained and collected for real."""
    runs = {
        "ptq": ["study=qat_fraction", "recipe=qat_int4", "recipe.quant_start_fraction=1.0", "steps=3"],
        "diverged": ["study=stability", "recipe=minifloat", "steps=40", "lr=50", "warmup_steps=0", "grad_clip=0"],
        "states": ["study=optimizer_fp8", "recipe=fp8_states", "steps=3"],
    }
    paths = []
    for name, overrides in runs.items():
        config = load_experiment("train", [*TRAIN_TINY, "eval_interval=3", *overrides])
        paths.append(workflow_dir / f"results/train/{name}/result.json")
        run_experiment(f"train/{name}", config, paths[-1])
    table = collect(paths)
    (ptq,) = report.qat_runs(*FIGURES["qat_fraction"].frames(table).values()).itertuples()
    assert ptq.start == 1.0 and ptq.qat_fraction == 0.0 and ptq.status == "ok" and ptq.bits == "int4"
    assert math.isfinite(ptq.loss) and math.isfinite(ptq.unquantized) and ptq.loss != ptq.unquantized
    quantized = table[(table["id"] == "train/ptq") & (table["metric"] == "final_eval_quantized")]
    assert quantized["value"].tolist() == [1.0] and quantized["label.formats"].tolist() == ["weight int4"]
    (diverged,) = report.stability_runs(*FIGURES["stability_divergence"].frames(table).values()).itertuples()
    assert diverged.diverged and 0 < diverged.diverged_step < 40 and diverged.element == "e8m3"
    (states,) = report.optimizer_runs(*FIGURES["optimizer_fp8"].frames(table).values()).itertuples()
    assert states.states == "fp8_states" and states.expansion and math.isfinite(states.loss)
    assert TABLES["qat_fraction"].make(table).iloc[0]["status"] == "too_few_runs"
