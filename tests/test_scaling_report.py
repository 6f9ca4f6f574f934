"""The ladder's report products from the scaling_fit kind's rows on runs drawn from Quartet's law (known
parameters within the intervals, beside the papers' constants; too few runs as rows saying so; what the runs
do not identify; Approach 2 and the holdout error), iso-FLOP slices and the compute-optimal envelope, the
train kind's size and compute metrics on a real tiny run, and the paper-size scaling suite's plan."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from test_scaling_fit import EFFICIENCY, LAW, fit_ladder, write_ladder

from conftest import TRAIN_TINY
from tradeoffs.fit import quartet_loss
from tradeoffs.models import ModelConfig, count_parameters
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.plan import build_plan
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report import FIGURES, TABLES, write_figure, write_table_file
from tradeoffs.report.scaling import iso_flop_slices, lower_envelope
from tradeoffs.results import Metric, ResultRecord, collect, write_result


def test_ladder_products_from_the_fit_studys_rows(workflow_dir):
    """The fitted-parameters table beside the papers' constants, and the two figures, from a ladder drawn from
    Quartet's law and the scaling_fit kind's rows on it (written and read through the product registry)."""
    results = fit_ladder(workflow_dir, write_ladder(workflow_dir))
    table = TABLES["scaling_ladder_fits"].make(results)
    quartet = table.loc["quartet"]
    for parameter in ("alpha", "beta", "gamma"):
        row = quartet.loc[("fp32", parameter)]
        assert row["status"] == "ok" and row["interval_low"] <= LAW[parameter] <= row["interval_high"], row
        assert row["paper"] == LAW[parameter] and row["r2"] > 0.99  # the synthetic law uses Quartet's exponents
    assert quartet.loc[("mxfp4", "eff_n"), "value"] == pytest.approx(EFFICIENCY["mxfp4"][0], rel=0.1)
    chinchilla = table.loc["chinchilla"]
    assert set(chinchilla.index.get_level_values("precision")) == set(EFFICIENCY)
    assert (chinchilla["runs"] == 16).all() and chinchilla.loc[("fp32", "alpha"), "paper"] == 0.34

    parquet = workflow_dir / "results" / "results.parquet"
    results.to_parquet(parquet)
    for name in ("scaling_ladder", "scaling_frontier"):
        out = workflow_dir / "reports" / "figures" / f"{name}.png"
        write_figure(name, parquet, out)
        assert out.stat().st_size > 20_000, name
    write_table_file("scaling_ladder_fits", parquet, workflow_dir / "reports" / "tables" / "fits.csv")
    assert "0.589" in (workflow_dir / "reports" / "tables" / "fits.md").read_text()


def write_iso_flop_ladder(root, budgets=(2e12, 6e12, 2e13, 6e13), noise=0.004) -> list[str]:
    """fp32 and mxfp4 train runs laid out for Approach 2: per compute budget C, five sizes from a quarter to 4
    times sqrt(C / 120) with D = C / 6N, final losses from Quartet's law with multiplicative noise."""
    rng, ids = np.random.default_rng(0), []
    for precision, (eff_n, eff_d) in {"fp32": (1.0, 1.0), "mxfp4": EFFICIENCY["mxfp4"]}.items():
        for compute in budgets:
            for factor in (0.25, 0.5, 1, 2, 4):
                n = math.sqrt(compute / 120) * factor
                d = compute / 6 / n
                loss = float(quartet_loss(n, d, **LAW, eff_n=eff_n, eff_d=eff_d) * np.exp(rng.normal(0, noise)))
                run_id = f"train/ladder_{precision}_{compute:g}_{factor}-00000000"
                metrics = [
                    Metric("final_val_loss", loss, "nats"),
                    Metric("non_embedding_parameters", n),
                    Metric("total_parameters", 1.1 * n),
                    Metric("training_tokens", d, "token"),
                    Metric("training_compute", 6.6 * n * d, "FLOP"),
                ]
                config = {
                    "kind": "train",
                    "study": "ladder",
                    "recipe": {"name": precision},
                    "model": {"name": f"m{n:.3g}"},
                }
                record = ResultRecord(run_id, "train", "ok", "", config, metrics, {}, {}, 0, "", "")
                write_result(root / "results" / run_id / "result.json", record)
                ids.append(run_id)
    return ids


def test_approach_2_identification_and_holdout_products(workflow_dir):
    """On a ladder laid out in iso-FLOP groups: Approach 2's table and figure, the identification and holdout
    rows of the fitted-parameters table, the held-out runs named in the frontier figure."""
    results = fit_ladder(workflow_dir, write_iso_flop_ladder(workflow_dir), "n_bootstrap=40")
    groups = TABLES["scaling_iso_flop"].make(results)
    assert len(groups) == 8 and set(groups["status"]) == {"ok"} and (groups["sizes"] == 5).all()
    fp32 = groups.loc["fp32"]
    assert (fp32["n_opt_low"] < fp32["n_opt"]).all() and (fp32["n_opt"] < fp32["n_opt_high"]).all()
    table = TABLES["scaling_ladder_fits"].make(results)
    assert table.loc[("iso_flop", "fp32", "n_opt_exponent"), "paper"] == 0.49
    assert 0.3 < table.loc[("iso_flop", "fp32", "n_opt_exponent"), "value"] < 0.7
    assert table.loc[("quartet", "fp32", "alpha"), "identified"] == "yes"  # N spans 1.6 decades over 20 sizes
    holdout = table.loc[("quartet holdout", "all", "holdout_rmse_log")]
    assert holdout["status"] == "ok" and 0 < holdout["value"] < 0.05 and holdout["runs"] == 10
    assert "held-out" in FIGURES["scaling_frontier"].make(results).axes[0].get_title()
    parquet = workflow_dir / "results" / "results.parquet"
    results.to_parquet(parquet)
    out = workflow_dir / "reports" / "figures" / "scaling_iso_flop.png"
    write_figure("scaling_iso_flop", parquet, out)
    assert out.stat().st_size > 20_000
    write_table_file("scaling_iso_flop", parquet, workflow_dir / "reports" / "tables" / "iso.csv")
    assert "n_opt" in (workflow_dir / "reports" / "tables" / "iso.md").read_text()


def test_iso_flop_slices_and_the_lower_envelope():
    runs = pd.DataFrame({"compute": [1.0, 1.2, 1.4, 3.0, 3.1, 9.0], "n_params": [1, 2, 2, 1, 3, 5]})
    slices = iso_flop_slices(runs, factor=1.5)
    assert [list(s.index) for s in slices] == [[0, 1, 2], [3, 4]]  # the run alone at 9 spans one size
    envelope = lower_envelope(pd.Series([1.0, 2.0, 3.0, 4.0]), pd.Series([3.0, 3.5, 2.5, 2.0]))
    assert list(envelope["compute"]) == [1.0, 3.0, 4.0]


def test_too_few_runs_are_rows_of_the_table_and_the_figures_name_the_fits_not_drawn(workflow_dir):
    ids = write_ladder(workflow_dir, {"fp32": (1, 1), "mxfp4": (0.6, 0.9)}, sizes=(5e4, 2e5), ratios=(2, 20))
    results = fit_ladder(workflow_dir, ids)
    table = TABLES["scaling_ladder_fits"].make(results)
    assert set(table.loc[("quartet", "fp32"), "status"]) == {"too_few_runs"}
    assert set(table.loc[("chinchilla", "fp32"), "status"]) == {"too_few_runs"}
    assert "4 runs for 5 parameters" in table.loc[("chinchilla", "fp32"), "reason"].iloc[0]
    assert table["value"].isna().all() and table["r2"].isna().all()
    note = "chinchilla too_few_runs; quartet too_few_runs"
    assert (
        note in FIGURES["scaling_ladder"].make(results).get_suptitle()
        and note in FIGURES["scaling_frontier"].make(results).get_suptitle()
    )
    assert (
        "not identified by these runs: chinchilla fp32: 4 runs for 5 parameters"
        in FIGURES["scaling_ladder"].make(results).get_suptitle()
    )
    assert set(table.loc[("chinchilla", "fp32"), "identified"]) == {"no"}
    assert (
        "no iso-FLOP group has 3 model sizes" in FIGURES["scaling_iso_flop"].make(results).axes[1].texts[0].get_text()
    )


def test_a_train_run_records_its_parameters_tokens_and_compute(workflow_dir):
    config = load_experiment("train", [*TRAIN_TINY, "steps=2", "eval_interval=2", "study=ladder"])
    path = workflow_dir / "results/train/t/result.json"
    table = collect([run_experiment("train/t", config, path) and path])
    value = table.set_index("metric")["value"]
    model, tokens = config.model, 2 * 4 * 32
    assert value["non_embedding_parameters"] == count_parameters(model).non_embedding
    assert value["total_parameters"] == count_parameters(model).total
    assert value["training_tokens"] == tokens
    attention = 6 * model.n_layer * model.context_length * model.d_model
    assert value["training_compute"] == tokens * (6 * count_parameters(model).non_embedding + attention)


def _reduced(suite: dict) -> dict:
    """The suite with one value of each axis that changes no check (seeds, budgets of one rung, learning
    rates, intermediate factors): the ladder keeps every rung at its largest budget, every recipe."""
    for study in suite["experiments"].values():
        sweep, zipped = study.get("sweep", {}), study.get("zip", {})
        sweep.pop("seed", None)
        for axis in ("steps", "lr", "factor", "recipe.quant_start_fraction"):
            if axis in sweep:
                sweep[axis] = sweep[axis][-1:]
        if "model" in zipped:
            last = sorted({value: i for i, value in enumerate(zipped["model"])}.values())
            study["zip"] = {axis: [values[i] for i in last] for axis, values in zipped.items()}
    return suite


@pytest.mark.slow  # composes about 60 experiments (the whole suite, 610, takes minutes on a 2-core machine)
def test_the_paper_size_scaling_suite_plans(workflow_dir):
    """Every kind of configuration of conf/suite/scaling.yaml composes and validates (each rung with each
    recipe, every QAT width, minifloat, optimizer-state variant and strategy)."""
    path = workflow_dir / "conf" / "suite" / "scaling.yaml"
    suite = yaml.safe_load(path.read_text())
    assert suite["experiments"]["ladder"]["sweep"]["seed"] == [0, 1, 2]
    path.write_text(yaml.safe_dump(_reduced(suite)))
    plan = build_plan("scaling")
    assert set(plan.studies()) == {
        "ladder",
        "scaling_law",
        "qat_fraction",
        "stability",
        "optimizer_fp8",
        "optimizer_states",
        "strategies",
    }
    ladder = [e.config for e in plan.experiments if e.config["study"] == "ladder"]
    assert {c["model"]["name"] for c in ladder} == {"gpt-1m", "gpt-3m", "gpt-10m", "gpt-30m"}
    assert {c["recipe"]["name"] for c in ladder} == {"fp32", "bf16", "fp8", "mxfp8", "mxfp4", "nvfp4"}
    ratios = [
        c["steps"] * c["batch_size"] * c["model"]["context_length"] / count_parameters(ModelConfig(**c["model"])).total
        for c in ladder
    ]
    assert round(min(ratios)) >= 20  # the largest budget of every rung: 20 tokens per parameter or more
    assert all(e.job.gpus == 1 for e in plan.experiments if e.kind in ("train", "strategies"))
    (fit,) = plan.of_kind("scaling_fit")  # one fit of every ladder run, on the CPU
    assert fit.inputs == tuple(e.result_path for e in plan.experiments if e.config["study"] == "ladder")
    assert fit.job.gpus == 0
