"""Scaling-law fits: each recovers the parameters of synthetic runs drawn from its own law with noise, within
its intervals; the bootstrap is seeded; too few runs, or no convergence, is a result that says so; the
tidy rows and the command line; exponents identified over 1.3 decades of N and not over 0.4; Approach 2
recovers a known compute-optimal ratio; the extrapolation error on held-out top-compute runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tradeoffs.__main__ import main as tradeoffs_main
from tradeoffs.errors import ConfigError
from tradeoffs.fit import (
    CHINCHILLA_PAPER,
    NOT_IDENTIFIED,
    OK,
    TOO_FEW_RUNS,
    FitOptions,
    best_qat_fraction,
    chinchilla_loss,
    compute_groups,
    divergence_rate,
    fit_chinchilla,
    fit_iso_flop,
    fit_quartet,
    fit_table,
    held_out,
    holdout_error,
    power_law,
    predict_loss,
    quartet_loss,
    runs_from_tidy,
)
from tradeoffs.fit.cli import main as fit_main
from tradeoffs.results import Metric

QUARTET_TRUTH = {"A": 2e4, "alpha": 0.589, "B": 3e4, "beta": 0.544, "gamma": 0.274, "E": 1.2}
EFFICIENCY_TRUTH = {"fp32": (1.0, 1.0), "fp8": (0.95, 0.98), "fp4": (0.6, 0.9)}


def ladder(seed: int = 0):
    """36 runs: 6 model sizes (5e4 .. 5e7) x 6 tokens-per-parameter ratios (2 .. 100)."""
    sizes, ratios = np.meshgrid(np.geomspace(5e4, 5e7, 6), [2, 5, 10, 20, 50, 100])
    n = sizes.ravel()
    return n, n * ratios.ravel(), np.random.default_rng(seed)


def chinchilla_runs(seed: int = 0, noise: float = 0.005):
    n, d, rng = ladder(seed)
    loss = chinchilla_loss(n, d, **CHINCHILLA_PAPER) * np.exp(rng.normal(0, noise, n.size))
    return n, d, loss


def quartet_runs(seed: int = 0, noise: float = 0.003):
    n, d, rng = ladder(seed)
    columns = []
    for precision, (eff_n, eff_d) in EFFICIENCY_TRUTH.items():
        loss = quartet_loss(n, d, **QUARTET_TRUTH, eff_n=eff_n, eff_d=eff_d) * np.exp(rng.normal(0, noise, n.size))
        columns += [(a, b, c, precision) for a, b, c in zip(n, d, loss, strict=True)]
    return [np.array(column) for column in zip(*columns, strict=True)]


@pytest.fixture(scope="module")
def chinchilla_fit():
    n, d, loss = chinchilla_runs()
    return fit_chinchilla(n, d, loss, [f"run{i}" for i in range(n.size)], FitOptions(n_bootstrap=100))


def test_chinchilla_recovers_its_parameters(chinchilla_fit):
    fit = chinchilla_fit
    assert fit.status == OK, fit.reason
    for name, truth in CHINCHILLA_PAPER.items():
        estimate = fit.estimate(name)
        assert estimate.contains(truth), (name, truth, estimate)
        assert estimate.low < estimate.value < estimate.high
    assert fit.value("alpha") == pytest.approx(0.34, abs=0.02)
    assert fit.value("n_opt_exponent") + fit.value("d_opt_exponent") == pytest.approx(1)
    assert fit.quality["r2"] > 0.999
    assert fit.quality["rmse_log"] == pytest.approx(0.005, rel=0.3)  # the noise put in
    assert fit.quality["n_bootstrap_ok"] == 100
    assert len(fit.residuals) == len(fit.run_ids) == 36
    curve = predict_loss(fit, 1e6, 2e7)
    assert curve == pytest.approx(chinchilla_loss(1e6, 2e7, **CHINCHILLA_PAPER), rel=0.01)


def test_quartet_recovers_shared_parameters_and_efficiencies():
    n, d, loss, precision = quartet_runs()
    fit = fit_quartet(
        n.astype(float), d.astype(float), loss.astype(float), precision, "fp32", None, FitOptions(n_bootstrap=60)
    )
    assert fit.status == OK, fit.reason
    for name, truth in QUARTET_TRUTH.items():
        assert fit.estimate(name).contains(truth), (name, truth, fit.estimate(name))
    for precision_name in ("fp8", "fp4"):
        eff_n, eff_d = EFFICIENCY_TRUTH[precision_name]
        assert fit.estimate("eff_n", precision=precision_name).contains(eff_n)
        assert fit.estimate("eff_d", precision=precision_name).contains(eff_d)
    assert fit.value("eff_n", precision="fp4") == pytest.approx(0.6, abs=0.05)
    assert fit.estimate("eff_n", precision="fp4").high < 0.9  # FP4 costs a measurable factor
    assert fit.quality["r2"] > 0.999
    fp4_curve = predict_loss(fit, 1e6, 2e7, precision="fp4")
    assert fp4_curve == pytest.approx(quartet_loss(1e6, 2e7, **QUARTET_TRUTH, eff_n=0.6, eff_d=0.9), rel=0.01)


def test_bootstrap_is_seeded_and_reproducible():
    n, d, loss = chinchilla_runs(seed=3)
    first, again, other = (
        fit_chinchilla(n, d, loss, options=FitOptions(n_starts=2, n_bootstrap=20, seed=s)) for s in (7, 7, 8)
    )
    assert first.estimates == again.estimates
    assert [e.value for e in first.estimates] == [e.value for e in other.estimates]  # the point fit has no randomness
    assert [e.low for e in first.estimates] != [e.low for e in other.estimates]


def test_too_few_runs_is_a_result():
    n, d, loss = chinchilla_runs()
    few = fit_chinchilla(n[:5], d[:5], loss[:5])
    assert few.status == TOO_FEW_RUNS
    assert "5 runs for 5 parameters" in few.reason
    assert not few.estimates
    one_size = fit_chinchilla(np.full(10, 1e6), np.geomspace(1e7, 1e9, 10), np.linspace(3, 2, 10))
    assert one_size.status == TOO_FEW_RUNS and "model sizes N" in one_size.reason
    n, d, loss, precision = quartet_runs()
    keep = (precision != "fp8") | (np.arange(len(n)) < 38)  # two fp8 runs
    fit = fit_quartet(n[keep], d[keep], loss[keep], precision[keep], options=FitOptions(n_starts=2, n_bootstrap=5))
    assert fit.status == OK
    starved = fit.estimate("eff_n", precision="fp8")
    assert starved.status == TOO_FEW_RUNS and math.isnan(starved.value) and "2 runs" in starved.reason
    assert "fp8" in fit.reason
    assert fit.estimate("eff_n", precision="fp4").status == OK


def test_a_law_the_runs_cannot_identify_names_the_parameters_on_their_bounds():
    n, d, _ = ladder()
    pure_power = 50 / n**0.3  # no irreducible loss E and no dependence on D: E and B run to their bounds
    fit = fit_chinchilla(n, d, pure_power, options=FitOptions(n_bootstrap=20))
    assert fit.status == OK and "at a bound: not identified by these runs" in fit.reason
    for name in ("E", "B", "beta"):
        assert not fit.estimate(name).identified and fit.estimate(name).identification, name


def test_diverged_runs_are_left_out_and_counted():
    n, d, loss = chinchilla_runs()
    loss = loss.copy()
    loss[[3, 10]] = np.nan
    fit = fit_chinchilla(n, d, loss, options=FitOptions(n_starts=2, n_bootstrap=0))
    assert fit.status == OK
    assert fit.quality["n_excluded_nonfinite"] == 2
    assert "row3" not in fit.run_ids and len(fit.run_ids) == 34
    assert math.isnan(fit.estimate("alpha").low)  # no bootstrap, no interval


def test_bad_input_names_the_column():
    n, d, loss = chinchilla_runs()
    with pytest.raises(ConfigError, match="tokens"):
        fit_chinchilla(n, -d, loss)
    with pytest.raises(ConfigError, match="loss"):
        fit_chinchilla(n, d, -loss)
    with pytest.raises(ConfigError, match=r"reference.*precisions in the runs: a, b"):
        fit_quartet(n, d, loss, ["a", "b"] * 18)


def test_rows_follow_the_tidy_table(chinchilla_fit):
    rows = chinchilla_fit.rows()
    alpha = next(r for r in rows if r["metric"] == "fit_parameter" and r["label.parameter"] == "alpha")
    estimate = chinchilla_fit.estimate("alpha")
    assert alpha["value"] == estimate.value  # unrounded
    assert (alpha["label.interval_low"], alpha["label.interval_high"]) == (estimate.low, estimate.high)
    assert alpha["label.fit"] == "chinchilla" and alpha["label.fit_status"] == "ok"
    assert json.loads(alpha["label.run_ids"]) == [f"run{i}" for i in range(36)]
    metrics = {r["metric"] for r in rows}
    assert {"fit_parameter", "fit_r2", "fit_rmse_log", "fit_residual", "fit_n_bootstrap_ok"} <= metrics
    assert sum(r["metric"] == "fit_residual" for r in rows) == 36
    assert all(isinstance(Metric(**m), Metric) for m in chinchilla_fit.metrics())


def test_best_qat_fraction_per_setting():
    rng = np.random.default_rng(0)
    fractions = np.arange(11) / 10
    optimum = {(4, 1e6): 0.3, (4, 1e7): 0.5, (2, 1e6): 0.7}  # grows with budget and with fewer bits
    rows = []
    for (bits, budget), best in optimum.items():
        for f in fractions:
            for _seed in range(3):
                rows.append((f, 3.0 + 0.4 * (f - best) ** 2 + rng.normal(0, 0.002), {"bits": bits, "budget": budget}))
    rows.append((0.5, 3.0, {"bits": 8, "budget": 1e6}))
    rows.append((1.0, 3.1, {"bits": 8, "budget": 1e6}))
    f, loss, settings = zip(*rows, strict=True)
    fit = best_qat_fraction(f, loss, settings, options=FitOptions(n_bootstrap=100))
    assert fit.status == OK
    for (bits, budget), best in optimum.items():
        estimate = fit.estimate("best_fraction", bits=bits, budget=budget)
        assert estimate.value == pytest.approx(best)
        assert estimate.contains(best)
        assert fit.value("gain_over_ptq", bits=bits, budget=budget) > 0
        assert fit.value("gain_over_full_qat", bits=bits, budget=budget) > 0
        assert fit.value("seed_noise_sd", bits=bits, budget=budget) == pytest.approx(0.002, rel=0.4)
    starved = fit.estimate("best_fraction", bits=8, budget=1e6)
    assert starved.status == TOO_FEW_RUNS and "2 distinct" in starved.reason
    assert best_qat_fraction([0, 1], [3, 3]).status == TOO_FEW_RUNS


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


def test_divergence_rate_against_bits():
    rng = np.random.default_rng(0)
    probability = {2: 0.9, 3: 0.6, 4: 0.3, 5: 0.1, 7: 0.0}
    bits = np.repeat(list(probability), 40)
    diverged = rng.random(bits.size) < np.array([probability[b] for b in bits])
    fit = divergence_rate(bits, diverged)
    for b, p in probability.items():
        estimate = fit.estimate("divergence_rate", bits=float(b))
        k = int(diverged[bits == b].sum())
        assert estimate.value == k / 40
        assert (estimate.low, estimate.high) == pytest.approx(_wilson(k, 40))
        assert estimate.contains(p)
    assert fit.value("trend_z") < -5 and fit.value("trend_p") < 1e-6
    flat = divergence_rate([4, 4, 8, 8], [False] * 4)
    assert flat.estimate("trend_z").status == TOO_FEW_RUNS
    with pytest.raises(ConfigError, match="diverged"):
        divergence_rate([4, 8], ["yes", "no"])


def test_power_law_exponent():
    s = np.array([1, 2, 4, 8, 16])
    fit = power_law(s, 3 * s**0.5 * (1 + 0.01 * np.array([1, -1, 1, -1, 1])), labels={"strategy": "width"})
    exponent = fit.estimate("exponent", strategy="width")
    assert exponent.contains(0.5) and exponent.value == pytest.approx(0.5, abs=0.01)
    assert fit.value("prefactor") == pytest.approx(3, rel=0.02)
    assert power_law([1, 2], [1, 4]).status == TOO_FEW_RUNS


def write_runs(path, seed: int = 0):
    n, d, loss = chinchilla_runs(seed)
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(n.size)], "n_params": n, "tokens": d, "loss": loss})
    frame["seed"] = 0
    frame.to_csv(path, index=False)
    return frame


def test_cli_prints_parameters_with_intervals(tmp_path, capsys):
    write_runs(tmp_path / "runs.csv")
    tradeoffs_main(
        ["fit", "chinchilla", str(tmp_path / "runs.csv"), "--bootstrap", "20", "--rows", str(tmp_path / "rows.csv")]
    )
    out = capsys.readouterr().out
    assert "chinchilla: ok; 36 runs" in out
    alpha = next(line for line in out.splitlines() if line.strip().startswith("alpha"))
    value, low, high = (float(x) for x in alpha.replace("[", " ").replace("]", " ").replace(",", " ").split()[1:4])
    assert low < value < high and low < 0.34 < high
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert set(rows[rows.metric == "fit_parameter"]["label.parameter"]) >= {"E", "A", "B", "alpha", "beta"}


def test_cli_groups_and_other_laws(tmp_path, capsys):
    n, d, loss, precision = quartet_runs()
    pd.DataFrame({"n_params": n, "tokens": d, "loss": loss, "precision": precision}).to_csv(
        tmp_path / "q.csv", index=False
    )
    fit_main(["quartet", str(tmp_path / "q.csv"), "--bootstrap", "5", "--starts", "2"])
    out = capsys.readouterr().out
    assert "eff_n" in out and "precision=fp4" in out
    frame = pd.read_csv(tmp_path / "q.csv")
    results = fit_table("chinchilla", frame, FitOptions(n_starts=2, n_bootstrap=0), group_by=["precision"])
    assert [r.estimates[0].labels["precision"] for r in results] == ["fp32", "fp8", "fp4"]


def test_cli_rejects_a_bad_table_or_law(tmp_path):
    frame = write_runs(tmp_path / "runs.csv")
    frame.drop(columns="tokens").to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(SystemExit, match=r"column 'tokens'.*required: n_params, tokens, loss.*found: run_id, n_params"):
        fit_main(["chinchilla", str(tmp_path / "missing.csv")])
    with pytest.raises(SystemExit, match="LAW: invalid value 'kaplan'; valid choices: chinchilla, quartet"):
        fit_main(["kaplan", str(tmp_path / "runs.csv")])
    frame.assign(loss=["x", *frame.loss[1:]]).to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(SystemExit, match="column 'loss': row 0 is 'x', not a number"):
        fit_main(["chinchilla", str(tmp_path / "text.csv")])
    with pytest.raises(SystemExit, match="no such file"):
        fit_main(["chinchilla", str(tmp_path / "absent.csv")])


def test_runs_from_tidy_table():
    tidy = pd.DataFrame(
        [
            {"id": "train/a", "status": "ok", "metric": "final_val_loss", "value": 2.5, "cfg.recipe.name": "fp32"},
            {
                "id": "train/a",
                "status": "ok",
                "metric": "non_embedding_parameters",
                "value": 1e5,
                "cfg.recipe.name": "fp32",
            },
            {"id": "train/a", "status": "ok", "metric": "training_tokens", "value": 2e6, "cfg.recipe.name": "fp32"},
            {"id": "train/b", "status": "diverged", "metric": "train_loss", "value": 9.0, "cfg.recipe.name": "fp4"},
            {
                "id": "train/b",
                "status": "diverged",
                "metric": "non_embedding_parameters",
                "value": 1e5,
                "cfg.recipe.name": "fp4",
            },
        ]
    )
    metrics = {"loss": "final_val_loss", "n_params": "non_embedding_parameters", "tokens": "training_tokens"}
    runs = runs_from_tidy(tidy, metrics, {"precision": "cfg.recipe.name"})
    assert runs.run_id.tolist() == ["train/a", "train/b"]
    assert runs.precision.tolist() == ["fp32", "fp4"] and runs.status.tolist() == ["ok", "diverged"]
    assert runs.loss.iloc[0] == 2.5 and math.isnan(runs.loss.iloc[1]) and math.isnan(runs.tokens.iloc[1])


# ------------------------------------------------------------------ identification, Approach 2, holdout
def narrow_ladder(low: float, high: float, sizes: int = 4, noise: float = 0.01, seed: int = 0):
    """Runs of Chinchilla's law (Hoffmann's constants) at `sizes` model sizes from `low` to `high` x 4 token
    budgets (5-40 tokens per parameter), with multiplicative log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.repeat(np.geomspace(low, high, sizes), 4)
    d = n * np.tile([5, 10, 20, 40], sizes)
    return n, d, chinchilla_loss(n, d, **CHINCHILLA_PAPER) * np.exp(rng.normal(0, noise, n.size))


def test_exponents_are_identified_over_1_3_decades_of_n_and_not_over_0_4():
    wide = fit_chinchilla(*narrow_ladder(1e5, 2e6), options=FitOptions(n_bootstrap=40))
    assert wide.status == OK and wide.quality["n_decades"] == pytest.approx(1.301, abs=1e-3)
    for name in ("alpha", "beta", "n_opt_exponent"):
        estimate = wide.estimate(name)
        assert estimate.identified, (name, estimate)
        assert estimate.low > 0
    assert wide.estimate("alpha").contains(CHINCHILLA_PAPER["alpha"])
    row = next(r for r in wide.rows() if r["metric"] == "fit_parameter" and r["label.parameter"] == "alpha")
    assert row["label.identified"] is True and row["label.identification"] == ""
    assert {"fit_n_decades", "fit_d_decades", "fit_n_values"} <= {r["metric"] for r in wide.rows()}

    for seed in (0, 1):  # one does not converge (E runs to its bound), one does: neither identifies N's term
        narrow = fit_chinchilla(*narrow_ladder(1e5, 2.5e5, seed=seed), options=FitOptions(n_bootstrap=40))
        alpha = narrow.estimate("alpha")
        assert (
            alpha.identified is False and "N term not identified: N spans 0.4 decades (needs 1)" in alpha.identification
        )
        assert narrow.estimate("beta").identification == "" or "D term" in narrow.estimate("beta").identification
    two_sizes = fit_chinchilla(*narrow_ladder(1e5, 2e6, sizes=2), options=FitOptions(n_bootstrap=20))
    assert "N takes 2 values (needs 3)" in two_sizes.estimate("alpha").identification
    assert two_sizes.estimate("A").identified is False


def iso_flop_runs(ratio: float = 20.0, noise: float = 0.003, budgets=(1e15, 4e15, 1.6e16, 6.4e16), seed: int = 0):
    """Runs in iso-FLOP groups (5 sizes at each budget C, from a quarter to 4 times the optimum) of a
    Chinchilla law with alpha = beta, whose compute-optimal D/N is `ratio` at every C, N_opt = sqrt(C / 6r)."""
    alpha, a = 0.3, 400.0
    law = {"E": 1.7, "A": a, "B": a * ratio**alpha, "alpha": alpha, "beta": alpha}
    n = np.array([math.sqrt(c / 6 / ratio) * f for c in budgets for f in (0.25, 0.5, 1, 2, 4)])
    d = np.repeat(budgets, 5) / 6 / n
    rng = np.random.default_rng(seed)
    return n, d, chinchilla_loss(n, d, **law) * np.exp(rng.normal(0, noise, n.size))


def test_approach_2_recovers_a_known_compute_optimal_ratio():
    fit = fit_iso_flop(*iso_flop_runs(ratio=20.0), options=FitOptions(n_bootstrap=200))
    assert fit.status == OK and fit.quality["iso_flop_groups_with_minimum"] == 4
    ratio = fit.estimate("tokens_per_parameter")
    assert ratio.contains(20.0) and ratio.value == pytest.approx(20, rel=0.05) and ratio.identified
    assert ratio.high / ratio.low < 1.2
    assert fit.value("n_opt_exponent") == pytest.approx(0.5, abs=0.03)  # N_opt ~ C^0.5 when alpha = beta
    assert fit.value("n_opt_exponent") + fit.value("d_opt_exponent") == pytest.approx(1)  # C = 6ND
    cheapest = fit.estimate("n_opt", compute=pytest.approx(1e15))
    assert cheapest.value == pytest.approx(math.sqrt(1e15 / 6 / 20), rel=0.05) and cheapest.labels["sizes"] == 5
    assert len(json.loads(cheapest.labels["group_runs"])) == 5
    other = fit_iso_flop(*iso_flop_runs(ratio=5.0), options=FitOptions(n_bootstrap=50))
    assert other.value("tokens_per_parameter") == pytest.approx(5, rel=0.05)  # not a constant of the method


def test_approach_2_says_which_groups_lack_sizes_instead_of_inventing_values():
    n, d, loss = chinchilla_runs()  # a grid of sizes x D/N: no two runs share their compute
    fit = fit_iso_flop(n, d, loss, options=FitOptions(n_bootstrap=0))
    assert fit.status == TOO_FEW_RUNS and "no iso-FLOP group has 3 model sizes" in fit.reason
    assert "groups (runs within x1.25 of compute) of 1 size(s)" in fit.reason
    assert all(math.isnan(e.value) and e.identified is False for e in fit.estimates)
    assert fit.estimate("tokens_per_parameter").status == TOO_FEW_RUNS
    n, d, loss = iso_flop_runs()
    keep = np.arange(n.size) >= 3  # the cheapest group keeps 2 of its 5 sizes
    fit = fit_iso_flop(n[keep], d[keep], loss[keep], options=FitOptions(n_bootstrap=20))
    starved = fit.estimate("n_opt", compute=pytest.approx(1e15, rel=0.1))
    assert starved.status == TOO_FEW_RUNS and "2 model sizes at C ≈ 1e+15 FLOP (needs 3)" in starved.reason
    assert fit.estimate("n_opt_exponent").status == OK and "left out" in fit.reason
    edge = np.isin(np.arange(n.size) % 5, [0, 1, 2])  # only sizes at and below the optimum: no bracketed minimum
    fit = fit_iso_flop(n[edge] * 4, d[edge] / 4, loss[edge], options=FitOptions(n_bootstrap=0))
    assert any(e.status == NOT_IDENTIFIED for e in fit.estimates)
    assert compute_groups([1.0, 1.2, 1.3, 1.5, 10.0]).tolist() == [0, 0, 1, 1, 2]
    with pytest.raises(ConfigError, match="iso_flop_tolerance"):
        compute_groups([1.0], tolerance=0.5)


def test_holdout_error_is_measured_on_the_top_compute_runs():
    n, d, loss = chinchilla_runs(noise=0.003)
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(n.size)], "n_params": n, "tokens": d, "loss": loss})
    runs["precision"] = "fp32"
    top = held_out(runs)
    compute = 6 * n * d
    assert top.sum() >= 1 and compute[top.to_numpy()].min() > compute[~top.to_numpy()].max()
    result = holdout_error(runs, "chinchilla", FitOptions(n_bootstrap=0))
    assert result.ok and result.quality["holdout_runs"] == top.sum()
    assert set(result.residuals) == set(runs.loc[top, "run_id"]) and not set(result.residuals) & set(result.run_ids)
    assert abs(result.quality["holdout_mean_log_error"]) < 0.02  # the law holds beyond the fitted compute
    bent = runs.assign(loss=np.where(top, runs["loss"] * 1.05, runs["loss"]))  # the largest runs 5% worse
    worse = holdout_error(bent, "chinchilla", FitOptions(n_bootstrap=0))
    shift = worse.quality["holdout_mean_log_error"] - result.quality["holdout_mean_log_error"]
    assert shift == pytest.approx(math.log(1.05), abs=1e-3)  # the held-out runs never reach the fit
    assert worse.quality["train_rmse_log"] == pytest.approx(result.quality["train_rmse_log"])
    rows = pd.DataFrame(worse.rows())
    assert {"fit_holdout_rmse_log", "fit_holdout_mean_log_error", "fit_residual"} <= set(rows["metric"])
    assert set(rows["label.law"].dropna()) == {"chinchilla"}
