"""Stated power and stable verdicts: what would decide an undecided part (computed from its runs), timing
parts marked unstable, `claims A --against B` and the suite each part was decided by. Two real runs of the smoke
suite that agree on every part that does not read a timing: tests/test_workflow.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from test_claims import A_BEATS_B, decide, gemm_run, qsnr_runs, run, table

from tradeoffs.report.claims import claims_markdown, claims_table, compare_claims, evaluate_claims, parse_claims
from tradeoffs.report.claims.against import compare_tables
from tradeoffs.report.claims.power import project
from tradeoffs.report.claims.stability import TIMING_METRICS
from tradeoffs.report.claims.verdicts import CONFIRMED, INCONCLUSIVE, TOO_FEW_RUNS, UNSTABLE, WITHIN_NOISE

PAIRED = {"low": 0.0, "paired_by": "cfg.seed", "min_runs": 2}


def paired_runs(differences, base=20.0, study="numerics", steps=None):
    """Runs of formats a and b on seeds 0..n-1, a - b = differences[seed]; seeds move both arms alike."""
    extra = {} if steps is None else {"steps": steps}
    a = [run(f"{study}/a{i}", study, [("qsnr_db", base + 3 * i + d)], format__name="a", seed=i, **extra)
         for i, d in enumerate(differences)]  # fmt: skip
    b = [run(f"{study}/b{i}", study, [("qsnr_db", base + 3 * i)], format__name="b", seed=i, **extra)
         for i in range(len(differences))]  # fmt: skip
    return table(*a, *b)


def with_spread(mean: float, sd: float, n: int) -> list[float]:
    """n values with exactly this mean and sample standard deviation."""
    z = np.linspace(-1.0, 1.0, n)
    return list(mean + sd * (z - z.mean()) / z.std(ddof=1))


# ------------------------------------------------------------------------------------------------ power
def test_seeds_to_decide_a_paired_comparison_follow_the_student_t_band():
    measured = [0.05, 0.35, -0.1]  # mean 0.1, per-pair spread 0.229: within noise with 3 seeds
    decision = decide("compare", A_BEATS_B, PAIRED, paired_runs(measured), study="numerics", metric="qsnr_db")
    assert decision.reason == WITHIN_NOISE
    (band,) = decision.bands
    sd = float(np.std(measured, ddof=1))
    assert (band.units, band.student_t, band.low) == (3, True, 0.0)
    assert band.spread == pytest.approx(sd) and band.value == pytest.approx(0.1)
    # independently: the smallest n whose 95% Student-t half-width is below the measured effect
    needed = next(n for n in range(2, 1000) if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) < 0.1)
    projection = project(band)
    assert (projection.units, projection.verdict) == (needed, CONFIRMED)
    # and the claim's own criterion agrees: that many seeds with this effect and spread decide it, one fewer not
    decided = paired_runs(with_spread(0.1, sd, needed))
    short = paired_runs(with_spread(0.1, sd, needed - 1))
    assert decide("compare", A_BEATS_B, PAIRED, decided, study="numerics", metric="qsnr_db").verdict == CONFIRMED
    assert decide("compare", A_BEATS_B, PAIRED, short, study="numerics", metric="qsnr_db").reason == WITHIN_NOISE


def test_unpaired_seeds_use_the_criterions_two_standard_errors():
    a, b = [21.0, 19.0, 23.0], [20.0, 22.0, 18.0]
    decision = decide("compare", A_BEATS_B, {"low": 0.0}, qsnr_runs(a, b), study="numerics", metric="qsnr_db")
    (band,) = decision.bands
    spread = math.hypot(np.std(a, ddof=1), np.std(b, ddof=1))
    needed = next(n for n in range(2, 10_000) if 2 * spread / math.sqrt(n) < 1.0)
    assert band.spread == pytest.approx(spread) and project(band).units == needed


def test_a_resolution_wider_than_the_effect_needs_a_larger_effect_not_seeds(tmp_path):
    results = paired_runs([0.02, 0.03, 0.025], study="qat_fraction", steps=40)
    params = {**PAIRED, "noise": 0.05}
    claims = parse_claims({"claims": [{"id": "c", "papers": ["p"], "statement": "s", "study": "qat_fraction",
        "metric": "qsnr_db", "parts": [{"id": "p", "statement": "s", "criterion": "compare", "params": params,
        "reads": A_BEATS_B}]}]})  # fmt: skip
    verdicts = evaluate_claims(results, claims)
    assert verdicts[0].parts[0].decision.reason == WITHIN_NOISE
    assert project(verdicts[0].parts[0].decision.bands[0]).units is None
    power = claims_table(claims, verdicts, results)["power"].iloc[0]
    assert "no count of pairs by seed decides it" in power and "resolution +-0.05 is not below the distance" in power
    assert "more training steps (these runs: 40)" in power


def test_no_diverged_run_measures_no_effect_and_a_rare_one_needs_runs():
    def stability(diverged):
        return table(*(
            run(f"s/{element}-{i}", "stability", [("final_val_loss", 3.0)], status="diverged" if i < n else "ok",
                recipe__weight_format__element=element)
            for element, n in (("e8m3", 0), ("e4m3", diverged)) for i in range(4)
        ))  # fmt: skip

    params = {"by": "cfg.recipe.weight_format.element", "order": ["e8m3", "e4m3"], "min_runs": 4}
    reads, statuses = {"runs": {}}, ["ok", "diverged"]
    none = decide("divergence_increases", reads, params, stability(0), study="stability", statuses=statuses)
    assert none.reason == WITHIN_NOISE and "sits on the claimed bound" in project(none.bands[0]).why
    one = decide("divergence_increases", reads, params, stability(1), study="stability", statuses=statuses)
    (band,) = one.bands  # shares 0 and 1/4: two binomial standard errors with n runs a format
    needed = next(n for n in range(2, 1000) if 2 * math.sqrt(0.25 * 0.75 / n) < 0.25)
    assert one.reason == WITHIN_NOISE and (project(band).units, project(band).verdict) == (needed, CONFIRMED)


def test_a_fit_interval_is_narrowed_by_more_fitted_runs_not_seeds():
    row = {"parameter": "eff_n", "interval_low": 0.85, "interval_high": 1.0}
    fit = table(run("fit/1", "scaling_law", [("fit_parameter", 0.95, row)]))
    reads = {"value": {"where": {"label.parameter": "eff_n"}}}
    params = {"low": 0.9, "interval": ["label.interval_low", "label.interval_high"]}
    decision = decide("threshold", reads, params, fit, study="scaling_law", metric="fit_parameter")
    projection = project(decision.bands[0])
    assert decision.reason == WITHIN_NOISE and projection.units is None and "fit's bootstrap" in projection.why


def test_too_few_runs_state_the_runs_the_criterion_needs():
    params = {"low": 0.0, "min_runs": 3}
    few = decide("compare", A_BEATS_B, params, qsnr_runs([21.0, 21.1], [20.0]), study="numerics", metric="qsnr_db")
    assert few.reason == TOO_FEW_RUNS
    assert [(b.name, b.units, b.needs) for b in few.bands] == [("a", 2, 3), ("b", 1, 3)]
    assert project(few.bands[1]).units == 3


def test_the_claims_page_names_the_deciding_suite_and_points_the_quick_suite_further():
    results = paired_runs([0.05, 0.35, -0.1]).assign(suite="quick")
    claims = parse_claims({"claims": [{"id": "c", "papers": ["p"], "statement": "s", "study": "numerics",
        "metric": "qsnr_db", "parts": [{"id": "p", "statement": "s", "criterion": "compare", "params": PAIRED,
        "reads": A_BEATS_B}]}]})  # fmt: skip
    text = claims_markdown(claims, evaluate_claims(results, claims), results)
    assert "runs of suite `quick`" in text and "- p: suite `quick`;" in text
    assert "What would decide the undecided parts:" in text
    line = next(line for line in text.splitlines() if line.startswith("- p (within noise): "))
    assert "a - b = 0.1 (band +-" in line and "from 3 pairs by seed" in line and "would decide it" in line
    print(line)
    assert "SUITE=workstation" in line  # the quick suite's undecided parts point to the workstation suite
    by_hand = results.drop(columns="suite")
    unrecorded = claims_markdown(claims, evaluate_claims(by_hand, claims), by_hand)
    assert "suite not recorded" in unrecorded


# ------------------------------------------------------------------------------------ unstable timings
def test_timing_parts_need_three_tight_fresh_process_repeats():
    reads, params = {"gemm": {}}, {"dtypes": ["fp32"], "min_pct": 50.0, "min_runs": 3}

    def peak(small_pct, big_pct):
        small = [gemm_run(f"g/s{i}", "fp32", 0.5, p, 2.0, size=256) for i, p in enumerate(small_pct)]
        big = [gemm_run(f"g/b{i}", "fp32", 1.5, p, 2.0, size=1024) for i, p in enumerate(big_pct)]
        return decide("approaches_peak", reads, params, table(*small, *big), study="gemm", metric="pct_of_peak")

    assert "pct_of_peak" in TIMING_METRICS and "tflops" in TIMING_METRICS
    assert peak([30, 31, 32], [80, 81, 82]).verdict == CONFIRMED
    loaded = peak([30, 31, 32], [18, 74, 90])  # one quiet repeat, two under load: the band spans most of the level
    assert (loaded.verdict, loaded.reason) == (INCONCLUSIVE, UNSTABLE) and "above 25%" in loaded.test
    missing = peak([30, 31], [80, 81])
    assert missing.reason == UNSTABLE and "needs 3 fresh-process repeats" in missing.test


def test_a_timing_without_repeats_is_unstable_and_a_non_timing_is_not():
    strategies = table(*(
        run(f"s/{i}", "strategies", [("time_median_s", 0.01 * f), ("activations", 100.0 * f), ("flops", 50.0 * f * f)])
        for i, f in enumerate([1.0, 2.0, 4.0, 8.0])
    ))  # fmt: skip
    reads = {
        "y": {"metric": "time_median_s"},
        "x": {"metric": "activations"},
        "alternative": {"metric": "flops"},
    }
    tracked = decide("tracks_better", reads, {"margin": 0.02}, strategies, study="strategies")
    assert tracked.reason == UNSTABLE and "would be" in tracked.test
    counted = decide("slope", {"x": {"metric": "flops"}, "y": {"metric": "activations"}}, {"low": 0.4, "high": 0.6},
                     strategies, study="strategies")  # fmt: skip
    assert counted.verdict == CONFIRMED


# ------------------------------------------------------------------------------------------- --against
def _claims():
    return parse_claims({"claims": [{"id": "c", "papers": ["p"], "statement": "s", "study": "numerics",
        "metric": "qsnr_db", "parts": [
            {"id": "seeded", "statement": "s", "criterion": "compare", "params": PAIRED, "reads": A_BEATS_B},
            {"id": "fixed", "statement": "s", "criterion": "compare", "params": {"high": 100.0}, "reads": A_BEATS_B},
        ]}]})  # fmt: skip


def test_against_lists_each_part_whose_verdict_moved_with_the_read_and_its_band(tmp_path, capsys):
    first, second = paired_runs([0.3, 0.35, 0.25]), paired_runs([0.05, 0.35, -0.1])
    found = compare_tables(first, second, _claims())
    assert [(d.part, d.first, d.second, d.timing) for d in found] == [
        ("seeded", CONFIRMED, f"{INCONCLUSIVE} ({WITHIN_NOISE})", ())
    ]
    (why, *reads) = found[0].why
    assert why.startswith("a - b: 0.3 -> 0.1 (moved -0.2; bands +-") and "within its band" in why
    assert any(r.startswith("read a: ") for r in reads)
    assert compare_tables(first, first, _claims()) == []

    paths = []
    for name, frame in (("A", first), ("B", second)):
        frame.assign(unit="dB").to_parquet(tmp_path / f"{name}.parquet", index=False)
        paths.append(tmp_path / f"{name}.parquet")
    from tradeoffs.__main__ import main

    main(["claims", str(paths[0]), "--against", str(paths[1])])
    out = capsys.readouterr().out
    assert " claims: " in out.splitlines()[0] and f"parts differ between {paths[0]} and {paths[1]}" in out
    assert compare_claims(paths[0], paths[0]).startswith("0 of ")
    with pytest.raises(SystemExit, match="not found"):
        main(["claims", str(paths[0]), "--against", str(tmp_path / "missing.parquet")])


def test_collect_records_the_suite(tmp_path):
    from tradeoffs.pipeline.config import load_experiment
    from tradeoffs.pipeline.runner import run_experiment
    from tradeoffs.results import collect

    path = tmp_path / "lmul" / "result.json"
    run_experiment("lmul/t-00000000", load_experiment("lmul", ["study=lmul", "n_values=4096"]), path, job_threads=1)
    assert set(collect([path], suite="quick")["suite"]) == {"quick"}
    assert "suite" not in collect([path])
