"""The claims engine: every criterion on small hand-built tables that confirm, refute and leave it
inconclusive; the reasons found before a criterion runs (missing study, failed, unsupported or diverged runs,
too few seeds); the claims file; and claims.md / claims.csv written from a table of real experiments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from tradeoffs.bench.targets import Target, load_targets, parse_targets
from tradeoffs.errors import ConfigError
from tradeoffs.report.claims import claims_table, decide_part, evaluate_claims, load_claims, parse_claims, write_claims
from tradeoffs.report.claims.criteria import CRITERIA
from tradeoffs.report.claims.spec import claims_path
from tradeoffs.report.claims.verdicts import (
    CONFIRMED,
    HARDWARE_ABSENT,
    INCONCLUSIVE,
    NOT_IN_SUITE,
    REFUTED,
    RUNS_FAILED,
    TOO_FEW_RUNS,
    UNSTABLE,
    WITHIN_NOISE,
)

# The ids of conf/claims.yaml's entries as the YAML has them, in order: what load_claims must give back.
CLAIM_IDS = [entry["id"] for entry in yaml.safe_load(claims_path().read_text())["claims"]]


# ------------------------------------------------------------------------------------- hand-built tables
def run(run_id: str, study: str, metrics=(), status: str = "ok", message: str = "", **config) -> list[dict]:
    """The tidy rows of one run: `metrics` as (name, value) or (name, value, labels); `config` keys are the
    cfg.* columns without the prefix, dots written as '__'."""
    common = {"id": run_id, "kind": study, "status": status, "message": message, "cfg.study": study}
    common |= {f"cfg.{k.replace('__', '.')}": v for k, v in config.items()}
    if not metrics:
        return [{**common, "metric": None, "value": np.nan}]
    rows = []
    for name, value, *labels in metrics:
        rows.append(
            {**common, "metric": name, "value": value, **{f"label.{k}": v for k, v in (labels or [{}])[0].items()}}
        )
    return rows


def table(*runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in runs for row in rows])


def part(criterion: str, reads: dict, params: dict | None = None, **defaults):
    """One validated part (through the claims file parser, as conf/claims.yaml's are)."""
    entry = {"id": "c", "papers": ["p"], "statement": "s", "parts": [
        {"id": "p", "statement": "s", "criterion": criterion, "params": params or {}, "reads": reads, **defaults}
    ]}  # fmt: skip
    return parse_claims({"claims": [entry]})[0].parts[0]


def qsnr_runs(values_a, values_b, study="numerics"):
    """Runs of formats a and b (one per value: seeds) with those QSNRs."""
    runs = [run(f"{study}/a{i}", study, [("qsnr_db", v)], format__name="a", seed=i) for i, v in enumerate(values_a)]
    runs += [run(f"{study}/b{i}", study, [("qsnr_db", v)], format__name="b", seed=i) for i, v in enumerate(values_b)]
    return table(*runs)


A_BEATS_B = {"a": {"where": {"cfg.format.name": "a"}}, "b": {"where": {"cfg.format.name": "b"}}}


def decide(criterion, reads, params, results, **defaults):
    return decide_part(results, part(criterion, reads, params, **defaults))


# ----------------------------------------------------------------------------------------------- compare
@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [([30.0], [20.0], CONFIRMED), ([20.0], [30.0], REFUTED), ([20.05], [20.0], INCONCLUSIVE)],
)
def test_compare_confirms_refutes_and_leaves_an_effect_below_noise_inconclusive(a, b, verdict):
    decision = decide(
        "compare", A_BEATS_B, {"low": 0.0, "noise": 0.1}, qsnr_runs(a, b), study="numerics", metric="qsnr_db"
    )
    assert decision.verdict == verdict
    assert decision.reason == (WITHIN_NOISE if verdict == INCONCLUSIVE else "")
    assert decision.run_ids == ("numerics/a0", "numerics/b0")
    ours = {n.name: n.ours for n in decision.numbers}
    assert ours["a"] == a[0] and ours["b"] == b[0] and ours["difference"] == pytest.approx(a[0] - b[0])
    assert "claimed > 0" in decision.test


def test_compare_noise_comes_from_seeds_and_too_few_seeds_is_inconclusive():
    params = {"low": 0.0, "min_runs": 3}
    noisy = qsnr_runs([21.0, 19.0, 23.0], [20.0, 22.0, 18.0])  # means 21 vs 20; two standard errors ~ 3.3
    assert decide("compare", A_BEATS_B, params, noisy, study="numerics", metric="qsnr_db").reason == WITHIN_NOISE
    tight = qsnr_runs([21.0, 21.1, 20.9], [20.0, 20.1, 19.9])
    assert decide("compare", A_BEATS_B, params, tight, study="numerics", metric="qsnr_db").verdict == CONFIRMED
    few = decide("compare", A_BEATS_B, params, qsnr_runs([21.0, 21.1], [20.0]), study="numerics", metric="qsnr_db")
    assert (few.verdict, few.reason) == (INCONCLUSIVE, TOO_FEW_RUNS)
    assert "needs 3 runs" in few.test


def test_compare_paired_by_seed_cancels_the_seed_spread_and_counts_pairs():
    # seeds 0..2 move both arms alike (+-2); a beats b by 0.2 in every seed
    a, b = [20.2, 22.2, 18.2], [20.0, 22.0, 18.0]
    unpaired = decide("compare", A_BEATS_B, {"low": 0.0}, qsnr_runs(a, b), study="numerics", metric="qsnr_db")
    assert unpaired.reason == WITHIN_NOISE
    params = {"low": 0.0, "paired_by": "cfg.seed", "min_runs": 3}
    paired = decide("compare", A_BEATS_B, params, qsnr_runs(a, b), study="numerics", metric="qsnr_db")
    assert paired.verdict == CONFIRMED and "paired by seed, 3 pairs" in paired.test
    noisy = decide("compare", A_BEATS_B, params, qsnr_runs([20.2, 21.0, 18.2], [20.0, 22.0, 18.0]),
                   study="numerics", metric="qsnr_db")  # fmt: skip
    assert noisy.reason == WITHIN_NOISE  # one seed reverses the effect
    two = decide("compare", A_BEATS_B, {"low": 0.0, "paired_by": "cfg.seed"}, qsnr_runs([20.2, 22.3], [20.0, 22.0]),
                 study="numerics", metric="qsnr_db")  # fmt: skip
    assert two.reason == WITHIN_NOISE and "noise +-0.64" in two.test  # t(0.975, 1) = 12.7 x 0.05, not 2 x 0.05
    few = decide("compare", A_BEATS_B, params, qsnr_runs(a, b[:2]), study="numerics", metric="qsnr_db")
    assert (few.verdict, few.reason) == (INCONCLUSIVE, TOO_FEW_RUNS)
    with pytest.raises(ConfigError, match=r"paired_by.*cfg\.lr"):
        decide("compare", A_BEATS_B, {"low": 0.0, "paired_by": "cfg.lr"}, qsnr_runs(a, b),
               study="numerics", metric="qsnr_db")  # fmt: skip


def test_compare_ratio_band():
    params = {"low": 0.5, "high": 2.0, "ratio": True, "noise": 0.01}
    for a, verdict in ((1.5, CONFIRMED), (3.0, REFUTED), (2.01, INCONCLUSIVE)):
        decision = decide("compare", A_BEATS_B, params, qsnr_runs([a], [1.0]), study="numerics", metric="qsnr_db")
        assert decision.verdict == verdict, a


def test_compare_at_a_saturated_ceiling_is_inconclusive_not_refuted():
    params = {"low": 0.2, "noise": 0.1, "saturated": 1.0}
    both_identical = decide("compare", A_BEATS_B, params, qsnr_runs([1.0], [1.0]), study="numerics", metric="qsnr_db")
    assert (both_identical.verdict, both_identical.reason) == (INCONCLUSIVE, WITHIN_NOISE)
    assert "no effect measurable" in both_identical.test
    one_moved = decide("compare", A_BEATS_B, params, qsnr_runs([1.0], [0.5]), study="numerics", metric="qsnr_db")
    assert one_moved.verdict == CONFIRMED


# -------------------------------------------------------------------------- reasons found before criteria
def test_missing_study_failed_unsupported_and_unplanned_runs_are_inconclusive_with_their_reason():
    reads, params = A_BEATS_B, {"low": 0.0}
    other = table(run("x/1", "other", [("qsnr_db", 1.0)]))
    missing = decide("compare", reads, params, other, study="numerics", metric="qsnr_db")
    assert (missing.reason, missing.test) == (NOT_IN_SUITE, "study 'numerics' did not run in this suite")

    failed = table(
        run("numerics/a", "numerics", [("qsnr_db", 30.0)], format__name="a"),
        run("numerics/b", "numerics", status="error", message="boom", format__name="b"),
    )
    decision = decide("compare", reads, params, failed, study="numerics", metric="qsnr_db")
    assert (decision.reason, decision.run_ids) == (RUNS_FAILED, ("numerics/a", "numerics/b"))
    assert "numerics/b: error boom" in decision.test

    unsupported = table(
        run("gemm/a", "gemm", [("tflops", 3.0)], format__name="a"),
        run("gemm/b", "gemm", status="unsupported", message="no units", format__name="b"),
    )
    assert decide("compare", reads, params, unsupported, study="gemm", metric="tflops").reason == HARDWARE_ABSENT

    unplanned = table(run("numerics/a", "numerics", [("qsnr_db", 30.0)], format__name="a"))
    decision = decide("compare", reads, params, unplanned, study="numerics", metric="qsnr_db")
    assert decision.reason == NOT_IN_SUITE and "cfg.format.name=b" in decision.test

    no_column = decide("compare", {"a": {"where": {"cfg.weight_format.name": "a"}}, "b": {}}, params, unplanned,
                       study="numerics", metric="qsnr_db")  # fmt: skip
    assert no_column.reason == NOT_IN_SUITE and "cfg.weight_format.name" in no_column.test


def test_across_judges_every_group_and_one_refuted_group_refutes():
    runs = [
        run(f"n/{f}-{d}", "numerics", [("qsnr_db", q)], format__name=f, distribution__name=d)
        for f, d, q in [("a", "g", 30.0), ("b", "g", 20.0), ("a", "t", 10.0), ("b", "t", 20.0)]
    ]
    decision = decide(
        "compare", A_BEATS_B, {"low": 0.0}, table(*runs), study="numerics", metric="qsnr_db",
        where={"cfg.distribution.name": ["g", "t"]}, across="cfg.distribution.name",
    )  # fmt: skip
    assert decision.verdict == REFUTED
    assert decision.test.startswith("g: a - b = +10") and "; t: a - b = -10" in decision.test
    only_g = decide(
        "compare", A_BEATS_B, {"low": 0.0}, table(*runs[:2]), study="numerics", metric="qsnr_db",
        where={"cfg.distribution.name": ["g", "t"]}, across="cfg.distribution.name",
    )  # fmt: skip
    assert (only_g.verdict, only_g.reason) == (INCONCLUSIVE, NOT_IN_SUITE)  # group t was not run


# --------------------------------------------------------------------------------- the other criteria
def test_ordered_chain_and_threshold_and_near_paper():
    runs = table(*(run(f"q/{f}", "quantizer", [("relative_mse", v)], format__name=f) for f, v in
                   [("rms", 0.0127), ("rtn", 0.0132), ("sr", 0.027)]))  # fmt: skip
    chain = {f: {"where": {"cfg.format.name": f}} for f in ("rms", "rtn", "sr")}
    params = {"higher": False, "ratio": True, "noise": 0.01}
    assert decide("ordered", chain, params, runs, study="quantizer", metric="relative_mse").verdict == CONFIRMED
    flipped = {f: chain[f] for f in ("rtn", "rms", "sr")}
    assert decide("ordered", flipped, params, runs, study="quantizer", metric="relative_mse").verdict == REFUTED

    bias = table(run("q/sr", "quantizer", [("bias", -4e-4)]), run("q/rtn", "quantizer", [("bias", -2e-2)]))
    small = {"high": 1e-3, "absolute": True, "noise": 3e-4}
    value = {"value": {"where": {"id": "q/sr"}}}
    assert decide("threshold", value, small, bias, study="quantizer", metric="bias").verdict == CONFIRMED
    value = {"value": {"where": {"id": "q/rtn"}}}
    assert decide("threshold", value, small, bias, study="quantizer", metric="bias").verdict == REFUTED

    crossings = table(run("x/4", "crossover", [("crossover_crest", 2.043)], int_format__name="mxint4"))
    reads = {"mx4": {"where": {"cfg.int_format.name": "mxint4"}, "paper": 2.04}}
    assert (
        decide("near_paper", reads, {"tolerance": 0.01}, crossings, study="crossover", metric="crossover_crest").verdict
        == CONFIRMED
    )
    reads["mx4"]["paper"] = 2.1
    assert (
        decide("near_paper", reads, {"tolerance": 0.01}, crossings, study="crossover", metric="crossover_crest").verdict
        == REFUTED
    )


def test_threshold_with_a_fit_interval():
    def fit(low, high):
        return table(
            run(
                "fit/1",
                "scaling_law",
                [("fit_parameter", 0.95, {"parameter": "eff_n", "interval_low": low, "interval_high": high})],
            )
        )

    reads, params = (
        {"value": {"where": {"label.parameter": "eff_n"}}},
        {"low": 0.9, "interval": ["label.interval_low", "label.interval_high"]},
    )
    for (low, high), verdict in (((0.92, 0.98), CONFIRMED), ((0.8, 0.89), REFUTED), ((0.85, 1.0), INCONCLUSIVE)):
        assert (
            decide("threshold", reads, params, fit(low, high), study="scaling_law", metric="fit_parameter").verdict
            == verdict
        )


def _model_and_bins(flip: bool) -> pd.DataFrame:
    """A crossover run whose model says INT wins below crest 3 (INT 40 - 20 log10 c, FP flat at 30.5 dB), and
    numerics runs whose crest bins agree with it (or show the opposite winner with `flip`)."""
    crests = np.arange(1.0, 8.01, 0.5)
    model = [("qsnr_theory_db", 40 - 20 * math.log10(c), {"format": "i4", "crest": c}) for c in crests]
    model += [("qsnr_theory_db", 30.5, {"format": "f4", "crest": c}) for c in crests]
    runs = [run("crossover/i4-f4", "crossover", model, int_format__name="i4", fp_format__name="f4")]
    for name in ("i4", "f4"):
        metrics = []
        for edge in np.arange(1.0, 6.0, 0.25):
            centre = edge + 0.125
            qsnr = 40 - 20 * math.log10(centre) if name == "i4" else 30.5
            if flip:
                qsnr = 70.5 - qsnr  # mirror around 35.25 dB: the other format wins everywhere the model decides
            labels = {"crest": edge}
            metrics += [
                ("crest_bin_blocks", 100.0, labels),
                ("crest_bin_signal", 1.0, labels),
                ("crest_bin_noise", 10 ** (-qsnr / 10), labels),
            ]
        runs.append(run(f"numerics/{name}", "numerics", metrics, format__name=name))
    return table(*runs)


@pytest.mark.parametrize(("flip", "verdict"), [(False, CONFIRMED), (True, REFUTED)])
def test_tracks_model(flip, verdict):
    bins = ["crest_bin_blocks", "crest_bin_signal", "crest_bin_noise"]
    reads = {
        "model": {"study": "crossover", "metric": "qsnr_theory_db"},
        "measured": {"study": "numerics", "metric": bins},
    }
    decision = decide("tracks_model", reads, {"min_agreement": 0.8, "margin_db": 1.0}, _model_and_bins(flip))
    assert decision.verdict == verdict
    agreement = next(n.ours for n in decision.numbers if n.name.endswith("sign agreement"))
    assert agreement == (1.0 if not flip else 0.0)


def gemm_run(run_id, dtype, tflops, pct, peak, status="ok", message="", size=1024):
    shape = {"m": size, "k": size, "n": size, "shape": f"{size}x{size}x{size}", "peak_tflops": peak}
    if status != "ok":
        return run(run_id, "gemm", status=status, message=message, dtype=dtype, hardware__device="cpu")
    return run(
        run_id, "gemm", [("tflops", tflops, shape), ("pct_of_peak", pct, shape)], dtype=dtype, hardware__device="cpu"
    )


def test_faster_where_units_judges_dtypes_with_their_own_units_only():
    reads = {"gemm": {}}
    params = {"dtypes": ["bf16", "fp8_e4m3"], "min_runs": 3}
    base = [gemm_run(f"g/fp32-{i}", "fp32", 1.0 + 0.01 * i, 50.0, 2.0) for i in range(3)]
    fast = [gemm_run(f"g/bf16-{i}", "bf16", 1.8 + 0.01 * i, 45.0, 4.0) for i in range(3)]
    slow = [gemm_run(f"g/bf16-{i}", "bf16", 0.5 + 0.01 * i, 12.0, 4.0) for i in range(3)]
    fp8 = [gemm_run("g/fp8", "fp8_e4m3", 0, 0, 0, status="unsupported", message="no FP8 units")]

    def run_it(runs):
        return decide("faster_where_units", reads, params, table(*runs), study="gemm", statuses=["ok", "unsupported"])

    confirmed = run_it(base + fast + fp8)
    assert (
        confirmed.verdict == CONFIRMED and "not judged: fp8_e4m3" in confirmed.test and "no FP8 units" in confirmed.test
    )
    assert run_it(base + slow).verdict == REFUTED
    no_units = [gemm_run(f"g/bf16-{i}", "bf16", 1.8, 45.0, 2.0) for i in range(3)]  # same peak as fp32
    absent = run_it(base + no_units + fp8)
    assert (absent.verdict, absent.reason) == (INCONCLUSIVE, HARDWARE_ABSENT)
    two_repeats = run_it(base[:2] + fast)  # a timing with too few fresh-process repeats: unstable, not a verdict
    assert two_repeats.reason == UNSTABLE and "needs 3 fresh-process repeats" in two_repeats.test


def test_approaches_peak():
    reads, params = {"gemm": {}}, {"dtypes": ["fp32"], "min_pct": 50.0, "min_runs": 3}
    small = [gemm_run(f"g/s{i}", "fp32", 0.5, 30.0 + i, 2.0, size=256) for i in range(3)]
    big = [gemm_run(f"g/b{i}", "fp32", 1.5, 80.0 + i, 2.0, size=1024) for i in range(3)]
    low = [gemm_run(f"g/b{i}", "fp32", 1.5, 40.0 + i, 2.0, size=1024) for i in range(3)]

    def judge(runs):
        return decide("approaches_peak", reads, params, pd.concat([table(*runs)]), study="gemm", metric="pct_of_peak")

    assert judge(small + big).verdict == CONFIRMED
    assert judge(small + low).verdict == REFUTED  # rises, but stays below half the peak


def test_divergence_increases_counts_diverged_runs():
    def runs(diverged_e4):
        out = [
            run(f"s/e8-{i}", "stability", [("final_val_loss", 3.0)], recipe__weight_format__element="e8m3")
            for i in range(8)
        ]
        out += [
            run(f"s/e4-{i}", "stability", status="diverged" if i < diverged_e4 else "ok",
                metrics=[("train_loss", 9.0)], recipe__weight_format__element="e4m3")
            for i in range(8)
        ]  # fmt: skip
        return table(*out)

    params = {"by": "cfg.recipe.weight_format.element", "order": ["e8m3", "e4m3"], "min_runs": 4}
    reads = {"runs": {}}
    assert (
        decide("divergence_increases", reads, params, runs(6), study="stability", statuses=["ok", "diverged"]).verdict
        == CONFIRMED
    )
    assert (
        decide("divergence_increases", reads, params, runs(1), study="stability", statuses=["ok", "diverged"]).reason
        == WITHIN_NOISE
    )
    few = {**params, "min_runs": 10}
    assert (
        decide("divergence_increases", reads, few, runs(6), study="stability", statuses=["ok", "diverged"]).reason
        == TOO_FEW_RUNS
    )


def _qat(losses: dict) -> pd.DataFrame:
    """QAT sweeps: {(steps, start): [losses over seeds]}."""
    return table(*(
        run(f"q/{steps}-{start}-{seed}", "qat_fraction", [("quantized_val_loss", loss)], steps=steps,
            recipe__quant_start_fraction=start, seed=seed)
        for (steps, start), values in losses.items() for seed, loss in enumerate(values)
    ))  # fmt: skip


def test_interior_optimum_and_optimum_moves():
    reads = {"runs": {}}
    interior = _qat({(100, 0.0): [3.2, 3.21], (100, 0.5): [3.0, 3.01], (100, 1.0): [3.3, 3.31]})
    params = {"x": "cfg.recipe.quant_start_fraction", "min_runs": 2}
    assert (
        decide("interior_optimum", reads, params, interior, study="qat_fraction", metric="quantized_val_loss").verdict
        == CONFIRMED
    )
    edge = _qat({(100, 0.0): [2.9, 2.91], (100, 0.5): [3.0, 3.01], (100, 1.0): [3.3, 3.31]})
    assert (
        decide("interior_optimum", reads, params, edge, study="qat_fraction", metric="quantized_val_loss").verdict
        == REFUTED
    )

    moves = _qat(
        {(100, 0.25): [3.1, 3.11], (100, 0.75): [3.0, 3.01], (400, 0.25): [2.5, 2.51], (400, 0.75): [2.6, 2.61]}
    )
    params = {"x": "cfg.recipe.quant_start_fraction", "by": "cfg.steps", "expect": "decreasing"}
    decision = decide("optimum_moves", reads, params, moves, study="qat_fraction", metric="quantized_val_loss")
    assert decision.verdict == CONFIRMED and [n.ours for n in decision.numbers] == [0.75, 0.25]
    params["expect"] = "increasing"
    assert (
        decide("optimum_moves", reads, params, moves, study="qat_fraction", metric="quantized_val_loss").verdict
        == REFUTED
    )
    tie = _qat({(100, 0.25): [3.0, 3.2], (100, 0.75): [3.1, 2.9], (400, 0.25): [2.5, 2.51], (400, 0.75): [2.6, 2.61]})
    assert (
        decide("optimum_moves", reads, params, tie, study="qat_fraction", metric="quantized_val_loss").reason
        == WITHIN_NOISE
    )


def test_slope_and_tracks_better():
    scales = [1, 2, 4, 8, 16]
    runs = table(*(
        run(f"m/{s}", "model_scaling", [("flops_per_token", 1e6 * s), ("activations_per_token", 1e3 * s**0.5),
                                        ("step_time_s", 0.01 * s**0.5 * (1 + 0.01 * (s % 3)))], scaling="width")
        for s in scales
    ))  # fmt: skip
    reads = {"x": {"metric": "flops_per_token"}, "y": {"metric": "activations_per_token"}}
    assert decide("slope", reads, {"low": 0.4, "high": 0.6}, runs, study="model_scaling").verdict == CONFIRMED
    assert decide("slope", reads, {"low": 0.9, "high": 1.1}, runs, study="model_scaling").verdict == REFUTED
    depth = table(*(
        run(f"d/{s}", "model_scaling", [("flops_per_token", 1e6 * s), ("activations_per_token", 1e3 * s),
                                        ("step_time_s", 0.01 * s)], scaling="depth")
        for s in scales
    ))  # fmt: skip
    reads = {
        "y": {"metric": "step_time_s"},
        "x": {"metric": "activations_per_token"},
        "alternative": {"metric": "flops_per_token"},
    }
    both = pd.concat([runs, depth])
    assert decide("tracks_better", reads, {"min_runs": 6}, both, study="model_scaling").verdict == CONFIRMED
    swapped = {"y": reads["y"], "x": reads["alternative"], "alternative": reads["x"]}
    assert decide("tracks_better", swapped, {"min_runs": 6}, both, study="model_scaling").verdict == REFUTED


# ------------------------------------------------------------------------------------- the claims file
def test_claims_file_has_every_claim_once_with_valid_criteria():
    claims = load_claims()
    assert CLAIM_IDS and [c.id for c in claims] == CLAIM_IDS and len(set(CLAIM_IDS)) == len(CLAIM_IDS)
    for claim in claims:
        for p in claim.parts:
            assert p.criterion in CRITERIA and p.statement, (claim.id, p.id)
    empty = evaluate_claims(table(run("x/1", "unrelated", [("m", 1.0)])), claims)
    assert all(v.verdict == INCONCLUSIVE and v.reason == NOT_IN_SUITE for v in empty)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"criterion": "bogus"}, "valid choices"),
        ({"params": {"lo": 0}}, "unknown parameter(s) ['lo']"),
        ({"reads": {"a": {}}}, "judges reads ['a', 'b']"),
        ({"reads": {"a": {"wehre": {}}, "b": {}}}, "unknown key(s) ['wehre']"),
        ({"reads": {"a": {"statuses": ["fine"]}, "b": {}}}, "invalid value 'fine'"),
    ],
)
def test_bad_claim_entries_fail_naming_the_key(change, message):
    entry = {"id": "p", "statement": "s", "criterion": "compare", "study": "numerics", "reads": A_BEATS_B, **change}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_claims({"claims": [{"id": "c", "papers": ["p"], "statement": "s", "parts": [entry]}]})


def test_targets_ship_with_the_package():
    targets = load_targets()
    assert {"qdq_of_copy", "qdq_vs_torchao", "train_loop_vs_minimal", "emulated_step_vs_fp32"} <= set(targets)
    assert targets["emulated_step_vs_fp32"].applies_to == ("fp8", "mxfp8")
    target = Target("t", "s", low=40.0)
    assert target.met(40.0) and not target.met(39.9) and target.verdict(41) == "target >= 40.0: met"
    with pytest.raises(ConfigError, match="unknown key"):
        parse_targets({"t": {"lowest": 1}})


# ------------------------------------------------------------------------------ from real experiments
@pytest.fixture(scope="module")
def real_table(tmp_path_factory):
    """A results table of real experiments: the L-Mul study, an INT/FP crossover pair with the numerics runs
    its Monte-Carlo bins come from, and MXFP4 quantizers."""
    from tradeoffs.pipeline.config import load_experiment
    from tradeoffs.pipeline.runner import run_experiment
    from tradeoffs.results import collect

    root = tmp_path_factory.mktemp("claims")
    small = ["n_values=65536", "row_size=1024"]
    experiments = [
        ("lmul", ["study=lmul", "operands=loguniform", "n_values=65536"]),
        ("lmul", ["study=lmul", "operands=gaussian", "n_values=65536"]),
        ("crossover", ["study=crossover", "format@int_format=mxint4", "format@fp_format=mxfp4"]),
        ("numerics", ["study=numerics", "format=mxint4", "distribution=gaussian", *small]),
        ("numerics", ["study=numerics", "format=mxfp4", "distribution=gaussian", *small]),
        ("numerics", ["study=quantizer", "format=mxfp4", "distribution=gaussian", "rotation=hadamard", *small]),
        ("numerics", ["study=quantizer", "format=mxfp4_sr", "distribution=gaussian", "rotation=hadamard", *small]),
    ]
    paths = []
    for index, (kind, overrides) in enumerate(experiments):
        path = root / f"{kind}{index}" / "result.json"
        run_experiment(f"{kind}/test{index}-0000000{index}", load_experiment(kind, overrides), path, job_threads=1)
        paths.append(path)
    frame = collect(paths)
    frame.to_parquet(root / "results.parquet", index=False)
    return root / "results.parquet"


@pytest.mark.slow
def test_claims_md_and_csv_from_real_runs(real_table, tmp_path, capsys):
    from tradeoffs.__main__ import main

    md, csv = tmp_path / "claims.md", tmp_path / "tables" / "claims.csv"
    main(["claims", str(real_table), "--md", str(md), "--csv", str(csv)])
    printed = capsys.readouterr().out
    assert printed.startswith(f"{len(CLAIM_IDS)} claims: ") and str(md) in printed

    results = pd.read_parquet(real_table)
    rows = pd.read_csv(csv, keep_default_na=False)
    claims = load_claims()
    assert len(rows) == sum(len(c.parts) for c in claims) and set(rows["claim"]) == set(CLAIM_IDS)
    lmul = rows[rows["claim"] == "lmul"].set_index("part")
    assert set(lmul["verdict"]) <= {CONFIRMED, REFUTED}  # both operand sets ran: decided
    errors = results[(results["metric"] == "mean_relative_error")].set_index(["cfg.operands", "label.multiplier"])[
        "value"
    ]
    assert f"loguniform: lmul_m3={errors[('loguniform', 'lmul_m3')]:.6g}" in lmul.loc["3bit-beats-e5m2", "ours"]
    assert set(lmul.loc["3bit-beats-e5m2", "run_ids"].split()) == set(results.loc[results["kind"] == "lmul", "id"])
    theory = rows[(rows["claim"] == "formats-crossover") & (rows["part"] == "theory")].iloc[0]
    assert theory["verdict"] == INCONCLUSIVE and theory["reason"] == NOT_IN_SUITE  # only the 4-bit MX pair ran
    assert "MXINT4/MXFP4" not in theory["test"] and "mxint8" in theory["test"]
    simulation = rows[(rows["claim"] == "formats-crossover") & (rows["part"] == "simulation")].iloc[0]
    assert simulation["verdict"] in (CONFIRMED, REFUTED) and "mxint4 vs mxfp4" in simulation["test"]
    gptq = rows[rows["claim"] == "gptq-vs-rtn"]
    assert set(gptq["reason"]) == {NOT_IN_SUITE} and "study 'gptq' did not run" in gptq["test"].iloc[0]

    text = md.read_text()
    for claim in claims:
        assert f"### {claim.id}: " in text and claim.statement in text
    assert (
        "## Summary" in text and "RMS clip (mxfp4_rms): - (paper 0.0132)" in text
    )  # not run: the paper's number still quoted
    again = claims_table(claims, write_claims(real_table))
    assert list(again["verdict"]) == list(rows["verdict"]) and list(again["test"]) == list(rows["test"])
