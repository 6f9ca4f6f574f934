"""The scaling_fit kind: the planner gives it every run of its source study as inputs; on a ladder whose
losses follow Quartet's law it writes the rows precision-scaling-law reads (known parameters within their
intervals) and the claim gets its verdicts through the claims engine; too few runs, a fit that does not
converge, or a ladder of fp32 only (the quick suite's) give rows saying why and inconclusive parts with the
reason; a real tiny ladder of train runs goes through it, in process and through Snakemake."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TRAIN_TINY
from tradeoffs.errors import ConfigError
from tradeoffs.fit import FitOptions, ladder_fits, quartet_loss
from tradeoffs.pipeline.config import load_experiment, to_typed
from tradeoffs.pipeline.plan import build_plan
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.report.claims import evaluate_claims, load_claims
from tradeoffs.report.claims.criteria import Arm, identified_fit
from tradeoffs.report.claims.verdicts import (
    CONFIRMED,
    FIT_FAILED,
    INCONCLUSIVE,
    NOT_IN_SUITE,
    REFUTED,
    TOO_FEW_RUNS,
    WITHIN_NOISE,
)
from tradeoffs.results import Metric, ResultRecord, collect, write_result

LAW = {"A": 300.0, "alpha": 0.589, "B": 900.0, "beta": 0.544, "gamma": 0.274, "E": 1.2}
EFFICIENCY = {"fp32": (1.0, 1.0), "fp8": (1.0, 1.0), "mxfp8": (0.98, 1.0), "mxfp4": (0.6, 0.9), "nvfp4": (0.7, 0.9)}
SIZES, RATIOS = (5e4, 2e5, 1e6, 5e6), (2, 5, 20, 50)


def write_ladder(root, efficiency=EFFICIENCY, sizes=SIZES, ratios=RATIOS, noise=0.001, seed=0) -> list[str]:
    """Result records of train runs of study `ladder` (one per size x D/N x precision) whose final loss follows
    Quartet's law with multiplicative noise; returns their ids."""
    rng = np.random.default_rng(seed)
    ids = []
    for precision, (eff_n, eff_d) in efficiency.items():
        for n in sizes:
            for ratio in ratios:
                loss = float(quartet_loss(n, n * ratio, **LAW, eff_n=eff_n, eff_d=eff_d) * np.exp(rng.normal(0, noise)))
                run_id = f"train/ladder_{precision}_{n:g}_{ratio}-00000000"
                metrics = [
                    Metric("final_val_loss", loss, "nats"),
                    Metric("non_embedding_parameters", n),
                    Metric("total_parameters", 1.1 * n),
                    Metric("training_tokens", n * ratio, "token"),
                    Metric("training_compute", 6.6 * n * n * ratio, "FLOP"),
                ]
                config = {
                    "kind": "train",
                    "study": "ladder",
                    "recipe": {"name": precision},
                    "model": {"name": f"gpt-{n:g}"},
                }
                record = ResultRecord(run_id, "train", "ok", "", config, metrics, {}, {}, 0, "", "")
                write_result(root / "results" / run_id / "result.json", record)
                ids.append(run_id)
    return ids


def fit_ladder(root, ids, *overrides) -> pd.DataFrame:
    """Run the scaling_fit kind on the ladder runs `ids` (as the planner would) and collect its rows with theirs."""
    config = load_experiment("scaling_fit", ["study=scaling_law", "n_bootstrap=20", *overrides])
    config.source_ids = list(ids)
    inputs = tuple(root / "results" / i / "result.json" for i in ids)
    path = root / "results" / "scaling_fit" / "scaling_law-00000000" / "result.json"
    record = run_experiment("scaling_fit/scaling_law-00000000", config, path, inputs=inputs)
    assert record.status == "ok", record.message
    return collect([path, *inputs])


def parameter(table: pd.DataFrame, name: str, precision: str, fit: str = "quartet") -> pd.Series:
    rows = table[
        (table["metric"] == "fit_parameter")
        & (table["label.parameter"] == name)
        & (table["label.precision"] == precision)
        & (table["label.fit"] == fit)
    ]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def verdicts(table: pd.DataFrame) -> dict:
    (claim,) = [c for c in load_claims() if c.id == "precision-scaling-law"]
    (verdict,) = evaluate_claims(table, [claim])
    return {p.part: p.decision for p in verdict.parts}


def test_the_kind_writes_the_rows_the_claim_reads_and_the_claim_gets_verdicts(workflow_dir):
    table = fit_ladder(workflow_dir, write_ladder(workflow_dir))
    for name in ("alpha", "beta", "gamma"):
        row = parameter(table, name, "fp32")
        assert row["label.fit_status"] == "ok" and row["label.interval_low"] <= LAW[name] <= row["label.interval_high"]
    for precision, (eff_n, _) in EFFICIENCY.items():
        if precision != "fp32":
            row = parameter(table, "eff_n", precision)
            assert (
                row["value"] == pytest.approx(eff_n, rel=0.1) and row["label.interval_low"] < row["label.interval_high"]
            )
        assert parameter(table, "alpha", precision, "chinchilla")["label.n_runs"] == len(SIZES) * len(RATIOS)
    (r2,) = table.loc[(table["metric"] == "fit_r2") & (table["label.fit"] == "quartet"), "value"]
    assert r2 > 0.99
    sources = table[table["metric"] == "source_runs"]
    assert sources.set_index("label.status")["value"].to_dict() == {"ok": len(EFFICIENCY) * len(SIZES) * len(RATIOS)}

    decided = verdicts(table)
    assert decided["fp8-near-one"].verdict == CONFIRMED, decided["fp8-near-one"]
    assert decided["fp4-below-one"].verdict == CONFIRMED, decided["fp4-below-one"]
    assert decided["law-fits"].verdict == CONFIRMED, decided["law-fits"]
    shown = {n.name: n for n in decided["law-fits"].numbers}
    assert shown["R^2"].ours == r2  # Quartet's fit, not an average with the Chinchilla fits
    assert shown["alpha"].ours == pytest.approx(parameter(table, "alpha", "fp32")["value"])
    assert shown["gamma"].paper == 0.274


def test_a_ladder_spanning_0_4_decades_of_n_leaves_law_fits_inconclusive_whatever_its_r2(workflow_dir):
    ids = write_ladder(workflow_dir, {"fp32": (1, 1)}, sizes=(1e5, 1.6e5, 2.5e5), ratios=(2, 5, 20, 50))
    table = fit_ladder(workflow_dir, ids, "n_starts=2")
    alpha = parameter(table, "alpha", "fp32")
    assert alpha["label.identified"] is False or alpha["label.identified"] == 0
    assert "N spans 0.4 decades (needs 1)" in alpha["label.identification"]
    spans = table[(table["label.fit"] == "quartet") & table["metric"].isin(["fit_n_decades", "fit_d_decades"])]
    assert spans.set_index("metric")["value"].round(2).to_dict() == {"fit_n_decades": 0.4, "fit_d_decades": 1.8}
    decided = verdicts(table)["law-fits"]
    assert decided.verdict == INCONCLUSIVE and decided.reason == TOO_FEW_RUNS, decided
    assert "N term not identified: N spans 0.4 decades (needs 1) (alpha)" in decided.test
    shown = {n.name: n.ours for n in decided.numbers}
    assert shown["parameters identified"] == 1 and "held-out log error (RMS)" in shown  # beta alone
    iso = table[(table["label.fit"] == "iso_flop") & (table["metric"] == "fit_parameter")]
    assert set(iso["label.fit_status"]) == {"too_few_runs"} and iso["value"].isna().all()
    assert iso["label.fit_reason"].str.contains("no iso-FLOP group has 3 model sizes").all()


def test_fp4_that_costs_nothing_is_refuted(workflow_dir):
    free = {**EFFICIENCY, "mxfp4": (1.3, 1.0), "nvfp4": (1.4, 1.0)}
    table = fit_ladder(workflow_dir, write_ladder(workflow_dir, free))
    assert verdicts(table)["fp4-below-one"].verdict == REFUTED


def test_too_few_runs_gives_rows_saying_so_and_inconclusive_parts(workflow_dir):
    ids = write_ladder(workflow_dir, {"fp32": (1, 1), "fp8": (0.95, 0.98)}, sizes=(5e4, 3e5), ratios=(2, 20))
    table = fit_ladder(workflow_dir, ids)
    chinchilla = parameter(table, "alpha", "fp32", "chinchilla")
    assert math.isnan(chinchilla["value"]) and chinchilla["label.fit_status"] == "too_few_runs"
    assert "4 runs for 5 parameters" in chinchilla["label.fit_reason"]
    for name, precision in (("gamma", "fp32"), ("eff_n", "fp8")):
        row = parameter(table, name, precision)
        assert math.isnan(row["value"]) and row["label.estimate_status"] == "too_few_runs", row
        assert "reference-precision runs" in row["label.estimate_reason"]
    r2 = table.loc[table["metric"] == "fit_r2", ["label.fit", "label.precision", "value"]]
    assert r2["value"].isna().all() and len(r2) == 3  # chinchilla fp32 and fp8, quartet over all

    decided = verdicts(table)
    assert decided["law-fits"].verdict == INCONCLUSIVE and decided["law-fits"].reason == FIT_FAILED
    assert "fit_r2 is NaN" in decided["law-fits"].test
    assert "reference-precision runs" in decided["law-fits"].test  # the fit's own reason, quoted


def test_an_fp32_only_ladder_leaves_the_multipliers_inconclusive_naming_the_missing_precisions(workflow_dir):
    table = fit_ladder(workflow_dir, write_ladder(workflow_dir, {"fp32": (1, 1)}))
    assert not table["label.precision"].isin(["fp8", "mxfp8", "mxfp4", "nvfp4"]).any()
    decided = verdicts(table)
    for part, missing in (("fp8-near-one", "label.precision=fp8"), ("fp4-below-one", "label.precision=mxfp4")):
        assert decided[part].verdict == INCONCLUSIVE and decided[part].reason == NOT_IN_SUITE
        assert missing in decided[part].test and "fit_parameter rows" in decided[part].test
    assert decided["law-fits"].verdict == CONFIRMED  # the shared fit on fp32 alone


def test_bad_options_and_a_source_that_is_not_a_train_study_fail_naming_them(workflow_dir):
    with pytest.raises(ConfigError, match="level"):
        load_experiment("scaling_fit", ["level=1.5"])
    ids = write_ladder(workflow_dir, {"fp32": (1, 1)}, sizes=(5e4,), ratios=(2,))
    config = load_experiment("scaling_fit", ["study=scaling_law"])
    path = workflow_dir / "results/scaling_fit/x/result.json"
    assert run_experiment("scaling_fit/x", config, path).status == "error"  # planned without its inputs
    config.source_ids = ids
    record = run_experiment("scaling_fit/x", config, path, inputs=(workflow_dir / "results" / ids[0] / "result.json",))
    assert record.status == "ok"
    config.source_ids = ["scaling_fit/x"]
    record = run_experiment("scaling_fit/y", config, path.with_name("y.json"), inputs=(path,))
    assert record.status == "error" and "kind ['scaling_fit']" in record.message


SUITE = """
experiments:
  ladder:
    kind: train
    sweep:
      model.n_layer: [1, 2]
      steps: [2, 4]
    fixed: {{{train}}}
  scaling_law:
    kind: scaling_fit
    source: ladder
    {where}
"""


def _suite(root, where: str = "") -> None:
    fixed = ", ".join(o.replace("=", ": ") for o in TRAIN_TINY)
    (root / "conf" / "suite" / "tiny_ladder.yaml").write_text(SUITE.format(train=fixed, where=where))


def test_the_planner_gives_one_fit_every_run_of_its_source_study(workflow_dir):
    _suite(workflow_dir)
    plan = build_plan("tiny_ladder")
    ladder = [e for e in plan.experiments if e.kind == "train"]
    (fit,) = plan.of_kind("scaling_fit")
    assert fit.inputs == tuple(e.result_path for e in ladder) and len(ladder) == 4
    assert fit.config["source_ids"] == [e.id for e in ladder]
    assert fit.id.startswith("scaling_fit/scaling-law-") and fit.job.threads == 1
    _suite(workflow_dir, "source_where: {steps: 4}")
    (narrowed,) = build_plan("tiny_ladder").of_kind("scaling_fit")
    assert len(narrowed.inputs) == 2 and narrowed.id != fit.id  # its sources are part of its identity
    (workflow_dir / "conf/suite/tiny_ladder.yaml").write_text("experiments:\n  scaling_law: {kind: scaling_fit}\n")
    with pytest.raises(ConfigError, match=r"reads the experiments of another study.*add `source: <study>`"):
        build_plan("tiny_ladder")
    (workflow_dir / "conf/suite/tiny_ladder.yaml").write_text(
        "experiments:\n  scaling_law: {kind: scaling_fit, fixed: {source_ids: [a]}}\n"
    )
    with pytest.raises(ConfigError, match="set by the planner"):
        build_plan("tiny_ladder")


def test_a_real_tiny_ladder_is_fitted_with_cannot_fit_rows_for_what_it_lacks(workflow_dir):
    _suite(workflow_dir)
    plan = build_plan("tiny_ladder")
    for experiment in plan.experiments:
        config = to_typed(experiment.config)
        inputs = tuple(workflow_dir / p for p in experiment.inputs)
        record = run_experiment(experiment.id, config, workflow_dir / experiment.result_path, inputs=inputs)
        assert record.status == "ok", record.message
    table = collect(workflow_dir / e.result_path for e in plan.experiments)
    fit = table[table["kind"] == "scaling_fit"]
    losses = table.loc[table["metric"] == "final_val_loss", "value"]
    assert len(losses) == 4 and losses.between(1, 10).all()
    assert set(fit.loc[fit["metric"] == "fit_parameter", "label.fit_status"]) == {"too_few_runs"}
    assert (fit.loc[fit["metric"] == "fit_parameter", "label.n_runs"] == 4).all()
    assert verdicts(table)["law-fits"].reason == FIT_FAILED


@pytest.mark.slow  # a real Snakemake run: four training jobs, the fit, its products and the claims (~1 min)
def test_a_tiny_ladder_its_fit_products_and_verdicts_through_snakemake(workflow_dir):
    _suite(workflow_dir)
    command = [str(Path(sys.executable).with_name("snakemake")), "--cores", "2", "--config", "suite=tiny_ladder"]
    done = subprocess.run(command, cwd=workflow_dir, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pd.read_parquet(workflow_dir / "results" / "results.parquet")
    assert set(table["status"]) == {"ok"}
    fits = {"chinchilla", "quartet", "iso_flop", "holdout"}
    assert set(table.loc[table["kind"] == "scaling_fit", "label.fit"].dropna()) == fits
    for name in ("scaling_ladder", "scaling_frontier", "scaling_iso_flop"):
        assert (workflow_dir / "reports" / "figures" / f"{name}.png").stat().st_size > 20_000, name
    assert (workflow_dir / "reports" / "tables" / "scaling_ladder_fits.csv").is_file()
    assert "(needs 3)" in (workflow_dir / "reports/tables/scaling_iso_flop.md").read_text()
    claims = pd.read_csv(workflow_dir / "reports" / "tables" / "claims.csv")
    scaling = claims[claims["claim"] == "precision-scaling-law"]
    assert len(scaling) and set(scaling["verdict"]) == {"inconclusive"}


def test_a_parameter_on_its_bound_is_named_and_not_identified_while_the_fit_keeps_the_others():
    """Quartet's six shared parameters on eight fp32 runs of two sizes: a parameter runs to its bound (a
    constrained optimum the data cannot move), so the fit's reason names it and no exponent is identified (N takes
    2 values); the point values are kept and fp8's multipliers are still fitted."""
    rng = np.random.default_rng(0)
    n, d = np.repeat([2e4, 6e4], 4), np.tile([15e3, 30e3, 60e3, 120e3], 2)
    loss = quartet_loss(n, d, **LAW) * np.exp(rng.normal(0, 0.01, 8))
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(8)], "n_params": n, "tokens": d, "loss": loss})
    runs = pd.concat([runs.assign(precision="fp32"), runs.assign(precision="fp8", run_id=runs["run_id"] + "b")])
    fits = ladder_fits(runs, FitOptions(n_bootstrap=4, n_starts=2))
    chinchilla = [r for r in fits if r.fit == "chinchilla"]
    (quartet,) = [r for r in fits if r.fit == "quartet"]
    assert [r.labels["precision"] for r in chinchilla] == ["fp32", "fp8"]
    assert quartet.status == "ok" and "at a bound: not identified by these runs" in quartet.reason
    rows = pd.DataFrame(quartet.rows())
    shared = rows[(rows["metric"] == "fit_parameter") & (rows["label.precision"] == "fp32")]
    assert np.isfinite(shared["value"]).all() and not shared["label.identified"].astype(bool).any()
    alpha = shared[shared["label.parameter"] == "alpha"].iloc[0]
    assert "N term not identified: N takes 2 values" in alpha["label.identification"]
    assert (shared["label.identification"] != "").all()
    eff = rows[rows["label.parameter"].isin(["eff_n", "eff_d"])]
    assert set(eff["label.precision"]) == {"fp8"} and np.isfinite(eff["value"]).all()


def test_identified_fit_confirms_refutes_or_names_what_is_not_identified():
    """The criterion on a Quartet fit's own rows: with both exponents identified, R^2 decides (confirmed above
    0.95, refuted below); with one unidentified, inconclusive with that parameter's reason whatever R^2 says."""
    rng = np.random.default_rng(1)
    n = np.repeat(np.geomspace(5e4, 5e6, 4), 4)
    d = n * np.tile([2, 5, 20, 50], 4)
    loss = quartet_loss(n, d, **LAW) * np.exp(rng.normal(0, 0.002, n.size))
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(n.size)], "n_params": n, "tokens": d, "loss": loss})
    (quartet,) = [
        r for r in ladder_fits(runs.assign(precision="fp32"), FitOptions(n_bootstrap=30)) if r.fit == "quartet"
    ]
    rows = pd.DataFrame(quartet.rows()).assign(id="scaling_fit/x", status="ok")
    terms = Arm.of("terms", rows[rows["label.parameter"].isin(["alpha", "beta"])])
    r2 = Arm.of("value", rows[rows["metric"] == "fit_r2"], "R^2")
    assert set(terms.rows["label.identified"]) == {True}
    assert identified_fit(r2, terms, low=0.95).verdict == CONFIRMED
    assert identified_fit(r2, terms, low=0.9999999).verdict == REFUTED  # a quality the law does not reach
    alpha = terms.rows["label.parameter"] == "alpha"
    lacking = terms.rows.assign(
        **{
            "label.identified": ~alpha,
            "label.identification": np.where(alpha, "N term not identified: N spans 0.4 decades (needs 1)", ""),
        }
    )
    decision = identified_fit(r2, Arm.of("terms", lacking), low=0.95)
    assert decision.verdict == INCONCLUSIVE and decision.reason == TOO_FEW_RUNS
    assert "not identified: N term not identified: N spans 0.4 decades (needs 1) (alpha)" in decision.test
    noisy = lacking.assign(
        **{"label.identification": np.where(alpha, "N term not identified: alpha's interval 0..0.9 includes 0", "")}
    )
    assert identified_fit(r2, Arm.of("terms", noisy), low=0.95).reason == WITHIN_NOISE
