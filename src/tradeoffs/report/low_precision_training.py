"""Figures and tables of the low-precision training studies: the QAT-fraction sweep (Compute-Optimal QAT: the
final loss of the quantized model against the step QAT starts at, per weight bit width and budget, and the best
fraction per setting), the stability sweep (To FP8 and Back Again: divergence rate and final loss against the
mantissa and exponent bits of a minifloat training format) and the optimizer-state precision runs (COAT: FP32
Adam states against FP8 states with and without dynamic range expansion, final loss per seed)."""

from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from tradeoffs.fit import FitOptions, best_qat_fraction, divergence_rate, runs_from_tidy
from tradeoffs.report.common import ReportError, studies_of

RUN_FIELDS = {"seed": "cfg.seed", "steps": "cfg.steps", "lr": "cfg.lr", "model": "cfg.model.name"}
RUN_METRICS = {"loss": "final_val_loss", "tokens": "training_tokens"}


def _runs(rows: pd.DataFrame, fields: dict[str, str], metrics: dict[str, str]) -> pd.DataFrame:
    """One row per run of a study's rows (ok and diverged runs): run_id, status, the config `fields` and final
    `metrics`."""
    present = {k: v for k, v in {**RUN_FIELDS, **fields}.items() if v in rows.columns}
    return runs_from_tidy(rows, {**RUN_METRICS, **metrics}, present)


def _models(runs: pd.DataFrame) -> str:
    return ", ".join(sorted(runs["model"].dropna().unique()))


def _budget_label(tokens: float, steps: int) -> str:
    return f"{tokens / 1e3:.0f}k tokens ({int(steps)} steps)"


# ----------------------------------------------------------------------------------------- QAT fraction
QAT_FIELDS = {"start": "cfg.recipe.quant_start_fraction", "bits": "cfg.recipe.weight_format.element"}


def qat_runs(qat_fraction: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the QAT-fraction study: the QAT start fraction (`start`: 0 QAT throughout, 1 PTQ of
    the final model), its QAT fraction 1 - start, the weight format, budget, seed, the final loss of the
    quantized model (`loss`), of the same weights unquantized (`unquantized`), and `excess`: the loss minus the
    full-precision model's of the same budget and seed (the PTQ runs train exactly that model)."""
    runs = _runs(qat_fraction, QAT_FIELDS, {"unquantized": "final_val_loss_unquantized"})
    runs["start"] = runs["start"].astype(float)
    runs["qat_fraction"] = 1.0 - runs["start"]
    full_precision = runs[np.isclose(runs["start"], 1.0)].groupby(["steps", "seed"])["unquantized"].mean()
    same_run = pd.MultiIndex.from_frame(runs[["steps", "seed"]])
    runs["excess"] = runs["loss"] - full_precision.reindex(same_run).to_numpy()
    return runs.sort_values(["steps", "bits", "start", "seed"], key=_bit_order).reset_index(drop=True)


def _bit_order(column: pd.Series) -> pd.Series:
    """Sort key: weight formats from the most to the fewest bits (int8 before int4), other columns as they are."""
    if column.name != "bits":
        return column
    return column.map(lambda name: -int(re.sub(r"\D", "", str(name)) or 0))


def _band(axis: plt.Axes, runs: pd.DataFrame, column: str, color: object, label: str) -> None:
    """The seed mean of `column` against the QAT start (points and line) and the seeds' range (band)."""
    line = runs[runs[column].notna()].groupby("start")[column]
    if line.ngroups:
        mean = line.mean()
        axis.fill_between(mean.index, line.min(), line.max(), color=color, alpha=0.2, linewidth=0)
        axis.plot(mean.index, mean, "o-", color=color, label=label)


def qat_fraction_figure(qat_fraction: pd.DataFrame) -> plt.Figure:
    """Per token budget (columns): the final validation loss of the quantized model against the QAT start
    fraction, one line per weight format (mean over seeds, the band their range), with the full-precision
    model's loss (the PTQ runs' weights before quantizing) dashed (top); and the same loss minus the
    full-precision loss of the same seed and budget, which takes out the seed-to-seed spread of the model
    itself (bottom). The top axis reads the QAT fraction."""
    runs = qat_runs(qat_fraction)
    budgets = list(dict.fromkeys(runs["steps"]))
    formats = list(dict.fromkeys(runs["bits"]))
    palette = dict(zip(formats, sns.color_palette("colorblind", len(formats)), strict=True))
    figure, axes = plt.subplots(2, len(budgets), figsize=(5.2 * len(budgets), 7.4), squeeze=False, sharex=True)
    for axis in axes[1][1:]:
        axis.sharey(axes[1][0])  # the differences on one scale; each budget's losses on their own
    for (top, bottom), steps in zip(axes.T, budgets, strict=True):
        part = runs[runs["steps"] == steps]
        for bits in formats:
            width = part[part["bits"] == bits]
            label = f"{bits} weights ({width['seed'].nunique()} seeds)"
            _band(top, width, "loss", palette[bits], label)
            _band(bottom, width, "excess", palette[bits], label)
        reference = part.loc[np.isclose(part["start"], 1.0), "unquantized"].dropna()
        if len(reference):
            label = "full precision (no quantization)"
            top.axhline(reference.mean(), color="0.4", linestyle="--", linewidth=1, label=label)
            bottom.axhline(0.0, color="0.4", linestyle="--", linewidth=1)
        diverged = int((part["status"] == "diverged").sum())
        note = f"; {diverged} diverged run(s) not drawn" if diverged else ""
        top.set_title(f"{_budget_label(part['tokens'].iloc[0], steps)}{note}", fontsize=10)
        bottom.set_xlabel("QAT start (fraction of the steps): 0 = QAT throughout, 1 = PTQ")
        bottom.set_xlim(-0.03, 1.03)
        fraction = top.secondary_xaxis("top", functions=(lambda x: 1 - x, lambda x: 1 - x))
        fraction.set_xlabel("QAT fraction of the budget")
        for axis in (top, bottom):
            axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("final val loss, quantized model (nats/token)")
    axes[1][0].set_ylabel("minus full precision, same seed (nats/token)")
    figure.suptitle(f"Full-precision training then QAT of the weights ({_models(runs)})")
    figure.tight_layout()
    handles = {h.get_label(): h for axis in axes[0] for h in axis.get_legend_handles_labels()[0]}
    figure.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4)
    return figure


def qat_fraction_table(qat_fraction: pd.DataFrame, options: FitOptions | None = None) -> pd.DataFrame:
    """Per weight format and budget: the best QAT fraction (of the budget spent in QAT: 1 - the start fraction)
    by mean loss over seeds, with its 95% bootstrap interval (runs resampled within each fraction), the loss
    there, its gains over pure PTQ (QAT fraction 0) and pure QAT (1), and the pooled seed noise
    (tradeoffs.fit.best_qat_fraction). `options`: the fit's settings (default FitOptions(), seed 0)."""
    runs = qat_runs(qat_fraction)
    settings = runs[["bits", "steps"]].to_dict("records")
    fit = best_qat_fraction(runs["qat_fraction"], runs["loss"], settings, runs["run_id"], options)
    rows: dict[tuple, dict] = {}
    for estimate in fit.estimates:
        key = (estimate.labels["bits"], int(estimate.labels["steps"]))
        row = rows.setdefault(key, {"status": estimate.status, "reason": estimate.reason})
        row[estimate.name] = estimate.value
        if estimate.name == "best_fraction":
            row["best_low"], row["best_high"] = estimate.low, estimate.high
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["weights", "steps"])
    counts = runs.groupby(["bits", "steps"]).agg(
        runs=("run_id", "size"), diverged=("status", lambda s: int((s == "diverged").sum()))
    )
    table = table.join(counts.rename_axis(["weights", "steps"]))
    columns = ["best_fraction", "best_low", "best_high", "loss_at_best", "gain_over_ptq", "gain_over_full_qat"]
    columns += ["seed_noise_sd", "runs", "diverged", "status", "reason"]
    return table.reindex(columns=columns)


# ----------------------------------------------------------------------------------------- stability
STABILITY_FIELDS = {"element": "cfg.recipe.weight_format.element"}
MINIFLOAT = re.compile(r"e(\d+)m(\d+)")
FULL_EXPONENT, FULL_MANTISSA = 8, 3  # the series: E8 with fewer mantissa bits, M3 with fewer exponent bits
SERIES = {"mantissa": ("mantissa_bits", "mantissa bits (E8Mm)"), "exponent": ("exponent_bits", "exponent bits (EeM3)")}


def stability_runs(stability: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the stability study: its minifloat element (e.g. e8m3) with its exponent and mantissa
    bits, learning rate, seed, status, the step it diverged at (nan when it did not) and its final loss."""
    runs = _runs(stability, STABILITY_FIELDS, {"diverged_step": "diverged_step"})
    parsed = runs["element"].astype(str).str.fullmatch(MINIFLOAT.pattern)
    if not parsed.all():
        bad = runs.loc[~parsed, "element"].iloc[0]
        study = studies_of(stability).iloc[0]
        raise ReportError(f"study '{study}': recipe.weight_format.element {bad!r} is not a minifloat eXmY")
    bits = runs["element"].str.extract(MINIFLOAT).astype(int)
    runs["exponent_bits"], runs["mantissa_bits"] = bits[0], bits[1]
    runs["diverged"] = runs["status"] == "diverged"
    return runs


def _series(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs of each series: reduced mantissa at E8, reduced exponent at M3 (E8M3 is in both)."""
    return {
        "mantissa": runs[runs["exponent_bits"] == FULL_EXPONENT],
        "exponent": runs[runs["mantissa_bits"] == FULL_MANTISSA],
    }


def _divergence(runs: pd.DataFrame) -> pd.DataFrame:
    """Per series and bit width: runs, diverged, the rate with its 95% Wilson interval (tradeoffs.fit)."""
    frames = []
    for series, part in _series(runs).items():
        if part.empty:
            continue
        column = SERIES[series][0]
        fit = divergence_rate(part[column], part["diverged"], [{"series": series}] * len(part), part["run_id"])
        rates = [e for e in fit.estimates if e.name == "divergence_rate"]
        frames.append(
            pd.DataFrame(
                {
                    "series": series,
                    "bits": [int(e.labels["bits"]) for e in rates],
                    "rate": [e.value for e in rates],
                    "low": [e.low for e in rates],
                    "high": [e.high for e in rates],
                    "trend_z": fit.value("trend_z", series=series),
                    "trend_p": fit.value("trend_p", series=series),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def stability_figure(stability: pd.DataFrame) -> plt.Figure:
    """Per series (columns: fewer mantissa bits at E8, fewer exponent bits at M3): the share of diverged runs
    over seeds and learning rates with its 95% Wilson interval (top; per learning rate in thin lines), and the
    final validation loss of the runs that did not diverge, mean over seeds per learning rate (bottom)."""
    runs = stability_runs(stability)
    rates, groups = _divergence(runs), _series(runs)
    series = [s for s in SERIES if s in set(rates["series"])]
    lrs = sorted(runs["lr"].unique())
    palette = dict(zip(lrs, sns.color_palette("colorblind", len(lrs)), strict=True))
    figure, axes = plt.subplots(2, len(series), figsize=(5.2 * len(series), 7.2), squeeze=False, sharex="col")
    for col, name in enumerate(series):
        column, label = SERIES[name]
        part, rate = groups[name], rates[rates["series"] == name].sort_values("bits")
        top, bottom = axes[0][col], axes[1][col]
        error = [rate["rate"] - rate["low"], rate["high"] - rate["rate"]]
        top.errorbar(rate["bits"], rate["rate"], yerr=error, fmt="o-", color="k", capsize=3, label="all runs")
        for lr, runs_at in part.groupby("lr"):
            share = runs_at.groupby(column)["diverged"].mean()
            top.plot(share.index, share, ".--", color=palette[lr], linewidth=0.8, label=f"lr {lr:g}")
            losses = runs_at[~runs_at["diverged"]].groupby(column)["loss"].mean()
            bottom.plot(losses.index, losses, "o-", color=palette[lr], label=f"lr {lr:g}")
        z = rate["trend_z"].iloc[0]
        trend = f"trend z = {z:.2f}" if math.isfinite(z) else "no trend test: every run the same outcome"
        top.set_title(f"fewer {name} bits ({part['run_id'].nunique()} runs)\n{trend}", fontsize=10)
        top.set_ylim(-0.05, 1.05)
        top.set_ylabel("diverged share of runs")
        bottom.set_ylabel("final val loss, runs not diverged (nats/token)")
        bottom.set_xlabel(label)
        bottom.invert_xaxis()  # fewer bits to the right (the column shares its x axis)
        for axis in (top, bottom):
            axis.set_xticks(sorted(part[column].unique()))
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    seeds = runs["seed"].nunique()
    figure.suptitle(
        f"Training in minifloat formats ({_models(runs)}, {seeds} seeds x {len(lrs)} learning rates)", y=1.0
    )
    figure.tight_layout()
    return figure


def stability_table(stability: pd.DataFrame) -> pd.DataFrame:
    """Per series and format: runs, diverged runs, the diverged share with its 95% Wilson interval, the median
    step of divergence, the mean final loss of the runs that did not diverge, and the series' Cochran-Armitage
    trend z and one-sided p (z < 0: fewer bits, more divergence)."""
    runs = stability_runs(stability)
    rates = _divergence(runs)
    rows = []
    for name, part in _series(runs).items():
        column = SERIES[name][0]
        for (element, bits), group in part.groupby(["element", column]):
            rate = rates[(rates["series"] == name) & (rates["bits"] == bits)].iloc[0]
            rows.append(
                {
                    "series": name,
                    "format": element,
                    "bits": int(bits),
                    "runs": len(group),
                    "diverged": int(group["diverged"].sum()),
                    "diverged_share": rate["rate"],
                    "share_low": rate["low"],
                    "share_high": rate["high"],
                    "median_diverged_step": group["diverged_step"].median(),
                    "loss_not_diverged": group.loc[~group["diverged"], "loss"].mean(),
                    "trend_z": rate["trend_z"],
                    "trend_p": rate["trend_p"],
                }
            )
    table = pd.DataFrame(rows).sort_values(["series", "bits"], ascending=[False, False])
    return table.set_index(["series", "format"])


# ----------------------------------------------------------------------------------------- optimizer states
OPTIMIZER_FIELDS = {"states": "cfg.recipe.name", "expansion": "cfg.recipe.state_range_expansion"}
REFERENCE_STATES = "fp32"
STATE_LABELS = {
    "fp32": "FP32 states",
    "fp8_states": "FP8 states, range expansion",
    "fp8_states_absmax": "FP8 states, plain absmax",
}


def optimizer_runs(optimizer_fp8: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the optimizer-state study: its state recipe (fp32, fp8_states, ...), range
    expansion, seed, status, final loss, optimizer-state bytes per parameter, and the loss relative to the
    FP32-state run of the same seed (`ratio`)."""
    runs = _runs(optimizer_fp8, OPTIMIZER_FIELDS, {"state_bytes": "optimizer_state_bytes_per_parameter"})
    reference = runs[runs["states"] == REFERENCE_STATES].groupby("seed")["loss"].mean()
    runs["ratio"] = runs["loss"] / runs["seed"].map(reference)
    runs["label"] = runs["states"].map(STATE_LABELS).fillna(runs["states"])
    return runs


def optimizer_fp8_figure(optimizer_fp8: pd.DataFrame) -> plt.Figure:
    """Final validation loss per seed of each optimizer-state precision (points; the bar is their mean) beside
    the FP32-state runs' mean and the +-1% band the COAT claim allows."""
    runs = optimizer_runs(optimizer_fp8)
    order = list(dict.fromkeys(runs["label"]))
    figure, axis = plt.subplots(figsize=(6.8, 4.0))
    reference = runs.loc[runs["states"] == REFERENCE_STATES, "loss"].mean()
    if math.isfinite(reference):
        axis.axhspan(0.99 * reference, 1.01 * reference, color="0.85", label="FP32 states' mean +-1%")
    ok = runs[runs["loss"].notna()]
    ok = ok.assign(seed=ok["seed"].map(lambda seed: f"seed {seed:g}"))
    sns.stripplot(data=ok, x="label", y="loss", hue="seed", order=order, palette="colorblind", size=7, ax=axis)
    means = ok.groupby("label")["loss"].mean().reindex(order)
    positions = np.arange(len(order))
    axis.hlines(means, positions - 0.3, positions + 0.3, color="k", label="mean over seeds", zorder=3)
    axis.set_xticks(positions, [label.replace(", ", ",\n") for label in order])
    diverged = runs[runs["status"] == "diverged"]
    for label in diverged["label"].unique():
        axis.annotate("diverged", (order.index(label), axis.get_ylim()[1]), ha="center", va="top", color="firebrick")
    axis.set_xlabel("Adam moments stored as")
    axis.set_ylabel("final validation loss (nats/token)")
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    budget = _budget_label(runs["tokens"].iloc[0], runs["steps"].iloc[0])
    axis.set_title(f"Optimizer-state precision ({_models(runs)}, {budget})", fontsize=10)
    figure.tight_layout()
    return figure


def optimizer_fp8_table(optimizer_fp8: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer-state precision and seed: status, final validation loss, its ratio to the FP32-state run
    of the same seed, and the states' bytes per parameter; a `mean` row per precision over its seeds."""
    runs = optimizer_runs(optimizer_fp8)
    columns = ["status", "loss", "ratio", "state_bytes"]
    per_seed = runs.assign(seed=runs["seed"].astype(int).astype(str)).set_index(["label", "seed"])[columns]
    means = runs.groupby("label", sort=False).agg(
        status=("status", lambda s: "/".join(sorted(set(s)))),
        loss=("loss", "mean"),
        ratio=("ratio", "mean"),
        state_bytes=("state_bytes", "first"),
    )
    means.index = pd.MultiIndex.from_tuples([(label, "mean") for label in means.index], names=["label", "seed"])
    table = pd.concat([per_seed, means]).rename(
        columns={"loss": "final_val_loss", "ratio": "loss_vs_fp32_states", "state_bytes": "state_bytes_per_parameter"}
    )
    order = list(dict.fromkeys(runs["label"]))
    return table.sort_index(level="label", key=lambda c: c.map(order.index), sort_remaining=True).rename_axis(
        ["optimizer_states", "seed"]
    )
