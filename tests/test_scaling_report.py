"""The ladder's fit table on runs drawn from Quartet's law (known parameters recovered within the intervals),
the train kind's size and compute metrics on a real tiny run, and the paper-size scaling suite's plan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TRAIN_TINY
from tradeoffs.config import load_experiment
from tradeoffs.fit import FitOptions, quartet_loss
from tradeoffs.models import ModelConfig, count_parameters
from tradeoffs.plan import build_plan
from tradeoffs.report.scaling import ladder_fits_table
from tradeoffs.results import collect
from tradeoffs.runner import run_experiment

LAW = {"A": 300.0, "alpha": 0.589, "B": 900.0, "beta": 0.544, "gamma": 0.274, "E": 1.2}
EFFICIENCY = {"fp32": (1.0, 1.0), "fp8": (0.95, 0.98), "mxfp4": (0.6, 0.9)}


def ladder_rows(noise: float = 0.002, seed: int = 0) -> pd.DataFrame:
    """Tidy rows of train runs (one per rung x D/N x precision) whose final loss follows Quartet's law with
    multiplicative noise, in the columns collect() gives them."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, ratio, (precision, (eff_n, eff_d)) in (
        (n, r, p) for n in (5e4, 2e5, 1e6, 5e6) for r in (2, 5, 20, 50) for p in EFFICIENCY.items()
    ):
        loss = quartet_loss(n, n * ratio, **LAW, eff_n=eff_n, eff_d=eff_d) * np.exp(rng.normal(0, noise))
        common = {"id": f"train/{precision}-{n:g}-{ratio}", "kind": "train", "status": "ok", "cfg.study": "ladder"}
        common |= {"cfg.recipe.name": precision, "cfg.model.name": f"gpt-{n:g}"}
        for metric, value in (
            ("final_val_loss", loss),
            ("non_embedding_parameters", n),
            ("training_tokens", n * ratio),
        ):
            rows.append({**common, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows)


def test_ladder_fits_recover_the_law_and_quote_the_papers_constants():
    table = ladder_fits_table(ladder_rows(), FitOptions(n_bootstrap=30))
    quartet = table.loc["quartet"]
    for parameter in ("alpha", "beta", "gamma"):
        row = quartet.loc[("fp32 (shared)", parameter)]
        assert row["status"] == "ok" and row["interval_low"] <= LAW[parameter] <= row["interval_high"], row
        assert row["paper"] == LAW[parameter]  # the synthetic law uses Quartet's exponents
    for precision, (eff_n, _) in EFFICIENCY.items():
        if precision != "fp32":
            row = quartet.loc[(precision, "eff_n")]
            assert row["value"] == pytest.approx(eff_n, rel=0.1)
            assert row["interval_low"] < row["interval_high"]
    chinchilla = table.loc["chinchilla"]
    assert set(chinchilla.index.get_level_values("precision")) == set(EFFICIENCY)
    assert (chinchilla["runs"] == 16).all() and (chinchilla.loc[("fp32", "alpha"), "paper"] == 0.34)


def test_too_few_runs_is_a_row_saying_so():
    rows = ladder_rows()
    few = rows[rows["id"].str.startswith("train/fp32-50000-") | rows["id"].str.startswith("train/mxfp4")]
    table = ladder_fits_table(few, FitOptions(n_bootstrap=0))
    assert set(table.loc[("quartet", "fp32 (shared)"), "status"]) == {"too_few_runs"}
    assert set(table.loc[("chinchilla", "fp32"), "status"]) == {"too_few_runs"}
    assert "runs" in table.loc[("chinchilla", "fp32"), "reason"].iloc[0]
    assert set(table.loc[("chinchilla", "mxfp4"), "status"]) == {"ok"}


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


@pytest.mark.slow  # composes about 60 experiments (the whole suite, 585, takes minutes on a 2-core machine)
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
