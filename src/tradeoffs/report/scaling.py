"""Figures and tables of the scaling studies: activations and step time against FLOPs per scaling strategy
(the strategies kind) with their fitted log-log exponents, and the scaling-law fits (Chinchilla per precision,
Quartet's law across precisions) of a ladder of training runs, beside the papers' constants."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

from tradeoffs.fit import (
    CHINCHILLA_PAPER,
    QUARTET_PAPER,
    FitOptions,
    FitResult,
    exponents_by_group,
    fit_table,
    runs_from_tidy,
)
from tradeoffs.report.common import select

STRATEGY_METRICS = ("flops", "activations", "parameters", "flops_factor", "time_median_s")
BASE_NAMES = {"gpt": "GPT", "cnn": "CNN"}
STRATEGY_ORDER = ["width", "depth", "context", "resolution", "compound"]
# Activations ~ s^e at FLOPs growth s (Dollár et al. 2021): width 1/2, depth and resolution 1, compound with
# width share alpha 1 - alpha/2 (0.6 at the paper's alpha = 0.8).
PAPER_ACTIVATION_EXPONENT = {"width": 0.5, "depth": 1.0, "resolution": 1.0}


def strategy_runs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the strategies study: base, model, strategy, factor, alpha and the counted and
    measured values (columns named by STRATEGY_METRICS)."""
    rows = select(results, "strategies", ("ok", "invalid"), STRATEGY_METRICS)
    rows = rows[rows["metric"].isin(STRATEGY_METRICS)]
    rows = rows.assign(model=rows["cfg.model.name"].where(rows["cfg.base"] == "gpt", rows["cfg.cnn.name"]))
    runs = rows.pivot_table(
        index=["id", "status", "model", "cfg.base", "cfg.strategy", "cfg.factor", "cfg.alpha"],
        columns="metric",
        values="value",
        aggfunc="first",
    ).reset_index()
    runs = runs.rename(
        columns={"cfg.base": "base", "cfg.strategy": "strategy", "cfg.factor": "factor", "cfg.alpha": "alpha"}
    )
    order = {name: i for i, name in enumerate(STRATEGY_ORDER)}
    return runs.sort_values(["base", "strategy", "factor"], key=lambda c: c.map(order) if c.name == "strategy" else c)


def strategies_figure(results: pd.DataFrame) -> plt.Figure:
    """Per base (rows): activations per sample and measured training step time against forward FLOPs per
    sample, log-log, one line per strategy; runs whose timing was invalid (cut by the time cap) are hollow."""
    runs = strategy_runs(results)
    bases = [b for b in BASE_NAMES if b in set(runs["base"])]
    figure, axes = plt.subplots(len(bases), 2, figsize=(10, 3.8 * len(bases)), squeeze=False)
    colors = sns.color_palette("colorblind")
    palette = {"width": colors[0], "depth": colors[1], "context": colors[2], "resolution": colors[2]}
    palette["compound"] = colors[4]
    columns = (
        ("activations", "activations per sample (elements)"),
        ("time_median_s", "training step time (s)"),
    )
    units = {"activations": "", "time_median_s": "s"}
    for row, base in zip(axes, bases, strict=True):
        part = runs[runs["base"] == base]
        batch = results.loc[results["id"].isin(part["id"]), "cfg.batch_size"].dropna().unique()
        for axis, (metric, label) in zip(row, columns, strict=True):
            for strategy, lines in part.groupby("strategy", sort=False):
                lines = lines.sort_values("flops")
                axis.plot(lines["flops"], lines[metric], "-", color=palette[strategy], label=strategy)
                for valid, points in lines.groupby(lines["status"] == "ok"):
                    axis.plot(
                        points["flops"],
                        points[metric],
                        "o",
                        color=palette[strategy],
                        markerfacecolor=palette[strategy] if valid else "none",
                    )
            axis.set_xscale("log")
            axis.set_yscale("log")
            for ticks, unit in ((axis.xaxis, "FLOP"), (axis.yaxis, units[metric])):
                ticks.set_major_locator(LogLocator(subs=(1, 2, 5)))
                ticks.set_major_formatter(EngFormatter(unit=unit))
                ticks.set_minor_formatter(NullFormatter())
            axis.set_xlabel("forward FLOPs per sample (FLOP)")
            axis.set_ylabel(label)
            axis.grid(alpha=0.3, which="both")
            models = ", ".join(sorted(part["model"].dropna().unique()))
            extra = f", batch {', '.join(map(str, map(int, batch)))}" if metric == "time_median_s" else ""
            axis.set_title(f"{BASE_NAMES[base]} base {models}{extra}", fontsize=10)
            axis.legend(title="strategy", fontsize=8)
    figure.suptitle("Scaling strategies at matched FLOPs growth (Dollár et al. 2021)")
    figure.tight_layout()
    return figure


def _paper_exponent(strategy: str, alpha: float) -> float:
    if strategy == "compound":
        return 1 - alpha / 2
    return PAPER_ACTIVATION_EXPONENT.get(strategy, math.nan)


def strategies_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per base, strategy and quantity (activations, parameters, step time): the log-log exponent against the
    FLOPs growth reached, with its 95% t interval and R^2, beside the paper's activation exponent."""
    runs = strategy_runs(results)
    rows = []
    for (base, alpha), part in runs.groupby(["base", "alpha"], sort=False):
        records = part.rename(columns={"id": "run_id"}).to_dict("records")
        fits = exponents_by_group(records, "flops_factor", ("activations", "parameters", "time_median_s"))
        for fit in fits:
            exponent = fit.estimate("exponent")
            strategy, quantity = exponent.labels["strategy"], exponent.labels["quantity"]
            paper = _paper_exponent(strategy, alpha) if quantity == "activations" else math.nan
            rows.append(
                {
                    "base": BASE_NAMES[base],
                    "strategy": strategy,
                    "quantity": quantity,
                    "exponent": exponent.value,
                    "interval_low": exponent.low,
                    "interval_high": exponent.high,
                    "paper": paper,
                    "r2_log": fit.quality.get("r2_log", math.nan),
                    "runs": len(fit.run_ids),
                    "status": fit.status,
                    "reason": fit.reason,
                }
            )
    return pd.DataFrame(rows).set_index(["base", "strategy", "quantity"])


# ----------------------------------------------------------------------------------------- ladder fits
REFERENCE_PRECISION = "fp32"  # Quartet's shared parameters are fitted on these runs
LADDER_METRICS = {"loss": "final_val_loss", "n_params": "non_embedding_parameters", "tokens": "training_tokens"}


def ladder_runs(results: pd.DataFrame, study: str = "ladder") -> pd.DataFrame:
    """One row per training run of `study` (diverged runs kept with nan loss): loss, N, D, precision."""
    rows = select(results, study, ("ok", "diverged"), ("non_embedding_parameters", "training_tokens"))
    return runs_from_tidy(rows, LADDER_METRICS, {"precision": "cfg.recipe.name", "model": "cfg.model.name"})


def _fit_rows(fit: FitResult, paper: dict[str, float], precision: str) -> list[dict]:
    rows = []
    for estimate in fit.estimates:
        rows.append(
            {
                "fit": fit.fit,
                "precision": estimate.labels.get("precision", precision),
                "parameter": estimate.name,
                "value": estimate.value,
                "interval_low": estimate.low,
                "interval_high": estimate.high,
                "paper": paper.get(estimate.name, math.nan),
                "r2": fit.quality.get("r2", math.nan),
                "runs": len(fit.run_ids),
                "status": fit.status if estimate.status == "ok" else estimate.status,
                "reason": estimate.reason or fit.reason,
            }
        )
    if not fit.estimates:
        rows.append(
            {"fit": fit.fit, "precision": precision, "parameter": "", "runs": len(fit.run_ids), "status": fit.status}
            | {"reason": fit.reason}
        )
    return rows


def ladder_fits_table(results: pd.DataFrame, options: FitOptions | None = None) -> pd.DataFrame:
    """The ladder's fits: Chinchilla (L = E + A/N^alpha + B/D^beta) per precision, and Quartet's law with the
    shared parameters on the fp32 runs and effN, effD per other precision; values with 95% bootstrap intervals,
    R^2 and the papers' constants (Hoffmann et al. 2022; Quartet 2025). `options`: the fits' settings (default
    FitOptions(): 200 bootstrap replicates, seed 0)."""
    runs = ladder_runs(results)
    rows = []
    for precision, part in runs.groupby("precision", sort=False):
        (fit,) = fit_table("chinchilla", part, options)
        rows += _fit_rows(fit, CHINCHILLA_PAPER, precision)
    if REFERENCE_PRECISION in set(runs["precision"]):
        (quartet,) = fit_table("quartet", runs, options, reference=REFERENCE_PRECISION)
        rows += _fit_rows(quartet, QUARTET_PAPER, f"{REFERENCE_PRECISION} (shared)")
    else:
        reason = f"no {REFERENCE_PRECISION} runs to fit the shared parameters on"
        rows.append({"fit": "quartet", "precision": "", "parameter": "", "status": "too_few_runs", "reason": reason})
    return pd.DataFrame(rows).set_index(["fit", "precision", "parameter"])
