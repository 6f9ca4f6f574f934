"""Figures and tables of the scaling studies: activations and step time against FLOPs per scaling strategy
(the strategies kind) with their fitted log-log exponents; and a ladder of training runs with the scaling laws
the scaling_fit kind fitted to it (Chinchilla per precision, Quartet's law across precisions): loss against N
and D/N with the fitted curves, the compute-optimal frontier and iso-FLOP slices, and the fitted parameters
beside the papers' constants (read from the fit study's rows; the report fits nothing itself)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import (
    EngFormatter,
    FixedLocator,
    FormatStrFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

from tradeoffs.fit import (
    ALL_PRECISIONS,
    CHINCHILLA_APPROACH2,
    CHINCHILLA_PAPER,
    OK,
    QUARTET_PAPER,
    TRAIN_RUN_FIELDS,
    TRAIN_RUN_METRICS,
    chinchilla_loss,
    exponents_by_group,
    quartet_loss,
    runs_from_tidy,
)
from tradeoffs.fit.laws import QUARTET_ESTIMATES
from tradeoffs.report.reads import STRATEGY_METRICS

BASE_NAMES = {"gpt": "GPT", "cnn": "CNN"}
STRATEGY_ORDER = ["width", "depth", "context", "resolution", "compound"]
# Activations ~ s^e at FLOPs growth s (Dollár et al. 2021): width 1/2, depth and resolution 1, compound with
# width share alpha 1 - alpha/2 (0.6 at the paper's alpha = 0.8).
PAPER_ACTIVATION_EXPONENT = {"width": 0.5, "depth": 1.0, "resolution": 1.0}


def strategy_runs(strategies: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the strategies study's rows: base, model, strategy, factor, alpha and the counted and
    measured values (columns named by STRATEGY_METRICS)."""
    rows = strategies[strategies["metric"].isin(STRATEGY_METRICS)]
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


def strategies_figure(strategies: pd.DataFrame) -> plt.Figure:
    """Per base (rows): activations per sample and measured training step time against forward FLOPs per
    sample, log-log, one line per strategy; runs whose timing was invalid (cut by the time cap) are hollow."""
    runs = strategy_runs(strategies)
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
        batch = strategies.loc[strategies["id"].isin(part["id"]), "cfg.batch_size"].dropna().unique()
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


def strategies_table(strategies: pd.DataFrame) -> pd.DataFrame:
    """Per base, strategy and quantity (activations, parameters, step time): the log-log exponent against the
    FLOPs growth reached, with its 95% t interval and R^2, beside the paper's activation exponent."""
    runs = strategy_runs(strategies)
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


# ------------------------------------------------------------------------------- the ladder and its fits
FIT_PAPERS = {"chinchilla": CHINCHILLA_PAPER, "quartet": QUARTET_PAPER}
LAW_NAMES = {"quartet": "Quartet's law", "chinchilla": "Chinchilla per precision"}
LAW_STYLES = {"quartet": "-", "chinchilla": ":"}
CHINCHILLA_LAW = ("E", "A", "B", "alpha", "beta")
PRECISION_ORDER = ["fp32", "bf16", "fp8", "mxfp8", "mxfp4", "nvfp4"]
MARKERS = "os^DvPX<>*"
ISO_FLOP_FACTOR = 1.5  # runs within this factor of compute of a slice's cheapest form one iso-FLOP slice
RUN_METRICS = {**TRAIN_RUN_METRICS, "total": "total_parameters", "compute": "training_compute"}


def ladder_runs(ladder: pd.DataFrame) -> pd.DataFrame:
    """One row per training run of the ladder's rows (diverged runs kept with nan loss): loss, N
    (non-embedding), total parameters, D, compute (6ND + attention), D/N, precision and model."""
    runs = runs_from_tidy(ladder, RUN_METRICS, {**TRAIN_RUN_FIELDS, "model": "cfg.model.name"})
    shared_name = runs.groupby("model")["n_params"].transform("nunique") > 1  # e.g. a name with n_layer varied
    sized = runs["model"] + " (N " + runs["n_params"].map(EngFormatter(places=0)) + ")"
    return runs.assign(
        model=runs["model"].where(~shared_name, sized),
        ratio=runs["tokens"] / runs["n_params"],
        total=runs["total"].fillna(runs["n_params"]),
    )


def fit_rows(scaling_law: pd.DataFrame) -> pd.DataFrame:
    """The fit rows (metrics fit_*) of the first ok run of the fit study (the scaling_fit kind's: the laws
    fitted to every ladder run), from its rows."""
    rows = scaling_law[scaling_law["id"] == scaling_law["id"].iloc[0]]
    return rows[rows["metric"].str.startswith("fit_", na=False)]


def fitted_law(fits: pd.DataFrame, fit: str, precision: str) -> Callable | None:
    """L(N, D) of `fit` (chinchilla or quartet) for `precision` from the fit rows; None unless that fit
    converged and made every estimate it needs (Quartet: the shared ones and the precision's effN, effD)."""
    params = fits[(fits["metric"] == "fit_parameter") & (fits["label.fit"] == fit)]
    reference = fits["cfg.reference"].iloc[0]
    if fit == "chinchilla":
        needed = {name: precision for name in CHINCHILLA_LAW}
    else:
        needed = {name: reference for name in QUARTET_ESTIMATES}
        needed |= {} if precision == reference else {"eff_n": precision, "eff_d": precision}
    usable = params[(params["label.fit_status"] == OK) & (params["label.estimate_status"] == OK)]
    values = {
        name: part["value"].iloc[0]
        for name, owner in needed.items()
        if len(part := usable[(usable["label.parameter"] == name) & (usable["label.precision"] == owner)])
    }
    if len(values) < len(needed):
        return None
    if fit == "chinchilla":
        return lambda n, d: chinchilla_loss(n, d, **values)
    return lambda n, d: quartet_loss(n, d, **values)


def _laws(fits: pd.DataFrame, precisions) -> dict[tuple[str, str], Callable]:
    """Every converged law per (fit, precision)."""
    found = {(fit, p): fitted_law(fits, fit, p) for fit in LAW_STYLES for p in precisions}
    return {key: law for key, law in found.items() if law is not None}


def _palette(precisions) -> dict[str, tuple]:
    known = [p for p in PRECISION_ORDER if p in set(precisions)]
    order = known + sorted(set(precisions) - set(known))
    return dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))


def _markers(runs: pd.DataFrame) -> dict[str, str]:
    models = runs.drop_duplicates("model").sort_values("n_params")["model"]
    return {model: MARKERS[i % len(MARKERS)] for i, model in enumerate(models)}


def _log_axes(axis, x_unit: str) -> None:
    """Log-log axes, called once everything is drawn: x ticks at 1, 2, 5 per decade over short ranges, the
    loss (y) at round linear values, as a loss axis spans less than a decade."""
    axis.set_xscale("log")
    axis.set_yscale("log")
    low, high = axis.get_xlim()
    subs = (1.0, 2.0, 5.0) if math.log10(high / low) < 2 else (1.0,)
    axis.xaxis.set_major_locator(LogLocator(subs=subs, numticks=5))
    axis.xaxis.set_major_formatter(EngFormatter(unit=x_unit))
    axis.xaxis.set_minor_formatter(NullFormatter())
    low, high = axis.get_ylim()
    ticks = MaxNLocator(6).tick_values(low, high)
    axis.yaxis.set_major_locator(FixedLocator(ticks[ticks > 0]))
    axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.set_ylim(low, high)
    axis.grid(alpha=0.3, which="both")


def _budget_groups(runs: pd.DataFrame) -> tuple[str, pd.Series]:
    """How runs of one budget are grouped for curves against N: by tokens per parameter (D / all parameters, 2
    significant digits) where those groups span more model sizes (a ladder of ratios), else by D (a ladder of
    fixed token budgets)."""
    per_parameter = (runs["tokens"] / runs["total"]).map(lambda v: float(f"{v:.2g}"))
    if runs.groupby(per_parameter)["n_params"].nunique().max() > runs.groupby("tokens")["n_params"].nunique().max():
        return "tokens per parameter", per_parameter
    return "D", runs["tokens"]


def _points(axis, runs: pd.DataFrame, x: str, colors: dict, markers: dict) -> None:
    for (precision, model), part in runs.groupby(["precision", "model"], sort=False):
        axis.plot(part[x], part["loss"], markers[model], color=colors[precision], markersize=5, alpha=0.85)


def _legend(figure, colors: dict, markers: dict, lines: dict[str, str]) -> None:
    """One legend beside the panels: precision colours, model markers and the line styles `lines` (label:
    style)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=p) for p, c in colors.items()]
    handles += [Line2D([], [], color="0.3", marker=m, linestyle="", label=model) for model, m in markers.items()]
    handles += [Line2D([], [], color="0.3", linestyle=style, label=label) for label, style in lines.items()]
    figure.legend(handles=handles, loc="outside right center", fontsize=8, title="precision / model / line")


def _fit_note(fits: pd.DataFrame, laws: dict) -> str:
    """Which fits are not drawn, and their status (e.g. 'not drawn: quartet not_converged')."""
    drawn = {fit for fit, _ in laws}
    params = fits[(fits["metric"] == "fit_parameter") & fits["label.fit"].isin(list(LAW_STYLES))]
    missing = params[~params["label.fit"].isin(drawn)].drop_duplicates(["label.fit", "label.fit_status"])
    return "; ".join(f"{r['label.fit']} {r['label.fit_status']}" for _, r in missing.iterrows())


def identification_note(fits: pd.DataFrame) -> str:
    """What the reference precision's laws leave unidentified, e.g. 'quartet: N term not identified: N spans
    0.4 decades (needs 1)'; '' when the runs identify both exponents of both laws."""
    reference = fits["cfg.reference"].iloc[0]
    params = fits[
        (fits["metric"] == "fit_parameter")
        & fits["label.fit"].isin(list(LAW_STYLES))
        & fits["label.parameter"].isin(["alpha", "beta"])
        & (fits["label.precision"] == reference)
    ]
    if "label.identified" not in params:
        return ""
    lacking = params[params["label.identified"].map(lambda flag: flag is not True and flag != 1)]
    notes = {}
    for (fit, text), _ in lacking.groupby(["label.fit", lacking["label.identification"].fillna("")], sort=False):
        notes.setdefault(fit, []).extend(
            (text or "no reason given").replace(" term not identified: ", " term: ").split("; ")
        )
    return "; ".join(f"{fit} {reference}: {', '.join(dict.fromkeys(texts))}" for fit, texts in notes.items())


def _titled(title: str, unidentified: str) -> str:
    """A figure title with the laws' identification problems beneath it, wrapped."""
    if not unidentified:
        return title
    return "\n".join([title, *_wrap(f"not identified by these runs: {unidentified}", 130)])


def holdout_rows(fits: pd.DataFrame) -> dict[str, dict]:
    """Per law (chinchilla, quartet), its held-out runs and errors from the holdout fit's rows: run_ids, the
    RMS and mean log error, the held-out runs' smallest compute and the fit's status and reason."""
    if "label.law" not in fits or "label.fit" not in fits:
        return {}
    rows = fits[fits["label.fit"] == "holdout"]
    found = {}
    for law, part in rows.groupby("label.law", sort=False):
        quality = part[part["metric"] != "fit_residual"].groupby("metric")["value"].first()
        found[law] = {
            "run_ids": list(part.loc[part["metric"] == "fit_residual", "label.run_id"])
            if "label.run_id" in part
            else [],
            "rmse": quality.get("fit_holdout_rmse_log", math.nan),
            "mean": quality.get("fit_holdout_mean_log_error", math.nan),
            "min_compute": quality.get("fit_holdout_min_compute", math.nan),
            "runs": quality.get("fit_holdout_runs", math.nan),
            "status": part["label.fit_status"].iloc[0],
            "reason": part["label.fit_reason"].iloc[0],
        }
    return found


def ladder_figure(ladder: pd.DataFrame, scaling_law: pd.DataFrame) -> plt.Figure:
    """The ladder's final validation loss against N (curves through the runs of one budget) and against D/N
    (curves per model size), points per run (colour: precision, marker: model), with the fitted laws of the
    fit study drawn per precision (Quartet's solid, Chinchilla's dotted) where they converged; log axes."""
    runs = ladder_runs(ladder).dropna(subset=["loss"])
    fits = fit_rows(scaling_law)
    colors, markers = _palette(runs["precision"]), _markers(runs)
    laws = _laws(fits, colors)
    figure, (by_n, by_ratio) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    _points(by_n, runs, "n_params", colors, markers)
    _points(by_ratio, runs, "ratio", colors, markers)
    budget, groups = _budget_groups(runs)
    n_grid = np.geomspace(runs["n_params"].min() / 1.5, runs["n_params"].max() * 1.5, 100)
    ratio_grid = np.geomspace(runs["ratio"].min() / 1.5, runs["ratio"].max() * 1.5, 100)
    for (fit, precision), law in laws.items():
        style = {"color": colors[precision], "linestyle": LAW_STYLES[fit], "linewidth": 1}
        for value, part in runs.groupby(groups):
            tokens = value if budget == "D" else part["ratio"].median() * n_grid
            by_n.plot(n_grid, law(n_grid, tokens), **style)
        for n in runs["n_params"].unique():
            by_ratio.plot(ratio_grid, law(n, ratio_grid * n), **style)
    _log_axes(by_n, "")
    by_n.set_xlabel("non-embedding parameters N")
    by_n.set_ylabel("final validation loss (nats)")
    text = EngFormatter(places=0, sep="") if budget == "D" else "{:g}".format
    budgets = ", ".join(text(v) for v in sorted(set(groups))) + (" tokens" if budget == "D" else "")
    by_n.set_title(f"loss against N; curves at each budget ({budget}: {budgets})", fontsize=9)
    _log_axes(by_ratio, "")
    by_ratio.set_xlabel("training tokens per non-embedding parameter D/N")
    by_ratio.set_ylabel("final validation loss (nats)")
    by_ratio.set_title("loss against D/N; curves at each model's N", fontsize=9)
    note = _fit_note(fits, laws)
    title = f"Ladder: final loss and the fitted scaling laws{f' (not drawn: {note})' if note else ''}"
    unidentified = identification_note(fits)
    figure.suptitle(_titled(title, unidentified), fontsize=10)
    _legend(figure, colors, markers, {LAW_NAMES[f]: LAW_STYLES[f] for f in LAW_STYLES if f in {k[0] for k in laws}})
    return figure


def lower_envelope(compute: pd.Series, loss: pd.Series) -> pd.DataFrame:
    """The runs on the compute-optimal frontier: those with a lower loss than every cheaper run, by compute."""
    order = pd.DataFrame({"compute": compute, "loss": loss}).dropna().sort_values(["compute", "loss"])
    best = order["loss"].cummin()
    return order[order["loss"] <= best].drop_duplicates("loss")


def iso_flop_slices(runs: pd.DataFrame, factor: float = ISO_FLOP_FACTOR) -> list[pd.DataFrame]:
    """Runs grouped into slices of about equal compute (each within `factor` of its slice's cheapest run),
    keeping the slices that span two model sizes or more."""
    ordered = runs.sort_values("compute")
    slices, start, current = [], None, []
    for index, compute in ordered["compute"].items():
        if start is None or compute > start * factor:
            slices.append(current)
            start, current = compute, []
        current.append(index)
    slices.append(current)
    return [ordered.loc[s] for s in slices if s and ordered.loc[s, "n_params"].nunique() >= 2]


def _flops_per_token(runs: pd.DataFrame) -> Callable[[np.ndarray], np.ndarray]:
    """Training FLOPs per token as a function of N, log-log interpolated between the ladder's models (their
    counted 6N + attention)."""
    rungs = runs.assign(f=runs["compute"] / runs["tokens"]).groupby("n_params")["f"].median()
    log_n, log_f = np.log(rungs.index.to_numpy(float)), np.log(rungs.to_numpy(float))
    return lambda n: np.exp(np.interp(np.log(n), log_n, log_f))


def frontier_figure(ladder: pd.DataFrame, scaling_law: pd.DataFrame) -> plt.Figure:
    """Left: final loss against training compute (6ND + attention) per run, the lower envelope of the runs per
    precision (solid steps) and the fitted law's envelope over the ladder's model sizes (dashed). Right: the
    iso-FLOP slices of the reference precision's runs, loss against N at about equal compute, with the fitted
    law at each slice's compute; log axes."""
    runs = ladder_runs(ladder).dropna(subset=["loss", "compute"])
    fits = fit_rows(scaling_law)
    colors, markers = _palette(runs["precision"]), _markers(runs)
    laws = _laws(fits, colors)
    per_token = _flops_per_token(runs)
    smallest, largest = runs["n_params"].min(), runs["n_params"].max()
    figure, (frontier, iso) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    _points(frontier, runs, "compute", colors, markers)
    grid = np.geomspace(runs["compute"].min() / 1.5, runs["compute"].max() * 1.5, 200)
    for precision, part in runs.groupby("precision", sort=False):
        envelope = lower_envelope(part["compute"], part["loss"])
        frontier.step(envelope["compute"], envelope["loss"], where="post", color=colors[precision], alpha=0.8)
        law = laws.get(("quartet", precision)) or laws.get(("chinchilla", precision))
        if law is not None:
            sizes = np.sort(part["n_params"].unique())
            curves = np.array([law(n, grid / per_token(n)) for n in sizes])
            frontier.plot(grid, curves.min(axis=0), "--", color=colors[precision], linewidth=1)
    _log_axes(frontier, "FLOP")
    frontier.set_xlabel("training compute C = D (6N + attention) (FLOP)")
    frontier.set_ylabel("final validation loss (nats)")
    held = holdout_rows(fits).get("quartet") or holdout_rows(fits).get("chinchilla")
    title = "compute-optimal frontier: envelope of the runs (solid), of the fitted law (dashed)"
    if held and held["run_ids"]:
        ringed = runs[runs["run_id"].isin(held["run_ids"])]
        frontier.plot(ringed["compute"], ringed["loss"], "o", markersize=11, markerfacecolor="none", color="0.2")
        title += (
            f"\nringed: the held-out top-compute runs; {'Quartet' if 'quartet' in holdout_rows(fits) else 'Chinchilla'}"
            f"'s law fitted without them misses them by {held['rmse']:.3g} RMS in log loss (mean {held['mean']:+.3g})"
        )
    elif held:
        title += f"\nholdout: {held['reason']}"
    first, *rest = title.split("\n")
    frontier.set_title("\n".join([first, *(line for part in rest for line in _wrap(part, 80))]), fontsize=9)
    reference = fits["cfg.reference"].iloc[0]
    own = runs[runs["precision"] == reference]
    slices = iso_flop_slices(own)
    shades = sns.color_palette("viridis", max(len(slices), 1))
    law = laws.get(("quartet", reference)) or laws.get(("chinchilla", reference))
    for shade, part in zip(shades, slices, strict=False):
        part = part.sort_values("n_params")
        compute = part["compute"].median()
        label = f"C ≈ {EngFormatter(unit='FLOP', places=1)(compute)}"
        iso.plot(part["n_params"], part["loss"], "o-", color=shade, label=label)
        if law is not None:
            n = np.geomspace(smallest, largest, 60)  # where C/D is interpolated between the rungs
            iso.plot(n, law(n, compute / per_token(n)), ":", color=shade, linewidth=1)
    _log_axes(iso, "")
    iso.set_xlabel("non-embedding parameters N")
    iso.set_ylabel("final validation loss (nats)")
    if slices:
        iso.legend(fontsize=7, title=f"{reference} runs of about equal compute", title_fontsize=7)
        iso.set_title(f"iso-FLOP slices (within x{ISO_FLOP_FACTOR} of compute); dotted: fitted law", fontsize=9)
    else:
        iso.text(
            0.5,
            0.5,
            f"no two {reference} runs of different N\nwithin x{ISO_FLOP_FACTOR} of compute",
            transform=iso.transAxes,
            ha="center",
            va="center",
        )
        iso.set_title("iso-FLOP slices", fontsize=9)
    note = _fit_note(fits, laws)
    title = f"Ladder: loss against training compute{f' (fits not drawn: {note})' if note else ''}"
    unidentified = identification_note(fits)
    figure.suptitle(_titled(title, unidentified), fontsize=10)
    lines = {"envelope of the runs": "-"}
    if laws:
        lines |= {"fitted law's envelope": "--", "fitted law at the slice's C": ":"}
    _legend(figure, colors, markers, lines)
    return figure


def ladder_fits_table(scaling_law: pd.DataFrame) -> pd.DataFrame:
    """The fit study's parameters: Chinchilla per precision and Quartet's law (shared parameters on the
    reference precision, effN and effD per other precision), each with its 95% bootstrap interval, the
    papers' constants (Hoffmann et al. 2022; Quartet 2025), its fit's R^2, the runs used, whether the runs
    identify it (and why not), and the status and reason of an estimate that could not be made; then
    Approach 2's exponents and compute-optimal tokens per parameter per precision (beside Hoffmann et al.'s
    Approach 2), and each law's log error on the held-out top-compute runs."""
    fits = fit_rows(scaling_law)
    r2 = fits[fits["metric"] == "fit_r2"].set_index(["label.fit", "label.precision"])["value"]
    params = fits[fits["metric"] == "fit_parameter"]
    if "label.compute" in params:  # Approach 2's per-group rows are the iso_flop table's
        params = params[params["label.compute"].isna()]
    papers = {**FIT_PAPERS, "iso_flop": CHINCHILLA_APPROACH2}
    rows = []
    for _, row in params.iterrows():
        fit, precision = row["label.fit"], row["label.precision"]
        key = (fit, precision) if (fit, precision) in r2.index else (fit, ALL_PRECISIONS)
        identified = row.get("label.identified")
        rows.append(
            {
                "fit": fit,
                "precision": precision,
                "parameter": row["label.parameter"],
                "value": row["value"],
                "interval_low": row["label.interval_low"],
                "interval_high": row["label.interval_high"],
                "paper": papers.get(fit, {}).get(row["label.parameter"], math.nan),
                "r2": r2.get(key, math.nan),
                "runs": row["label.n_runs"],
                "identified": "yes"
                if identified is True or identified == 1
                else "no"
                if identified is not None
                else "",
                "status": row["label.estimate_status"],
                "reason": row.get("label.identification") or row["label.estimate_reason"] or row["label.fit_reason"],
            }
        )
    for law, held in holdout_rows(fits).items():
        precision = "all" if law == "quartet" else fits["cfg.reference"].iloc[0]
        for name, value in (("holdout_rmse_log", held["rmse"]), ("holdout_mean_log_error", held["mean"])):
            rows.append(
                {
                    "fit": f"{law} holdout",
                    "precision": precision,
                    "parameter": name,
                    "value": value,
                    "runs": held["runs"],
                    "identified": "",
                    "status": held["status"],
                    "reason": held["reason"]
                    or f"fitted without the runs from C = {held['min_compute']:.3g} FLOP on, scored on them",
                }
            )
    return pd.DataFrame(rows).set_index(["fit", "precision", "parameter"])


def iso_flop_groups(scaling_law: pd.DataFrame) -> pd.DataFrame:
    """Approach 2's iso-FLOP groups from the fit study's rows: one row per precision and group with its
    compute, sizes, runs (ids), N_opt, D_opt and D_opt / N_opt with intervals, the minimum's loss and the
    parabola's curvature (in log loss per squared ln N), status and reason."""
    fits = fit_rows(scaling_law)
    params = fits[(fits["metric"] == "fit_parameter") & (fits["label.fit"] == "iso_flop")]
    if "label.compute" not in params:
        return pd.DataFrame()
    params = params[params["label.compute"].notna()]
    records = []
    for (precision, compute), part in params.groupby(["label.precision", "label.compute"], sort=False):
        values = part.set_index("label.parameter")
        record = {
            "precision": precision,
            "compute": float(compute),
            "sizes": int(values["label.sizes"].iloc[0]),
            "run_ids": json.loads(values["label.group_runs"].iloc[0]),
            "status": values["label.estimate_status"].iloc[0],
            "reason": values["label.estimate_reason"].iloc[0],
        }
        for name in ("n_opt", "d_opt", "ratio_opt", "loss_opt", "curvature"):
            record[name] = values.loc[name, "value"] if name in values.index else math.nan
        for name in ("n_opt", "ratio_opt"):
            record[f"{name}_low"] = values.loc[name, "label.interval_low"]
            record[f"{name}_high"] = values.loc[name, "label.interval_high"]
        records.append(record)
    return pd.DataFrame(records)


def iso_flop_table(scaling_law: pd.DataFrame) -> pd.DataFrame:
    """Approach 2 per precision and iso-FLOP group (C = 6ND): model sizes and runs, the compute-optimal N and D
    at the parabola's minimum with N_opt's and D/N's 95% intervals, the loss there, and why a group gives none."""
    groups = iso_flop_groups(scaling_law)
    if groups.empty:
        fits = fit_rows(scaling_law)
        ran = fits[fits["label.fit"] == "iso_flop"]["label.fit_reason"].dropna().astype(str)
        reason = ran.iloc[0] if len(ran) else "the fit study has no Approach 2 rows (no ladder run to fit)"
        empty = {"precision": "", "compute": math.nan, "status": "too_few_runs", "reason": reason}
        return pd.DataFrame([empty]).set_index(["precision", "compute"])
    groups = groups.assign(runs=groups["run_ids"].map(len)).drop(columns=["run_ids", "curvature"])
    columns = ["precision", "compute", "sizes", "runs", "n_opt", "n_opt_low", "n_opt_high", "d_opt"]
    columns += ["ratio_opt", "ratio_opt_low", "ratio_opt_high", "loss_opt", "status", "reason"]
    return groups[columns].set_index(["precision", "compute"])


def iso_flop_figure(ladder: pd.DataFrame, scaling_law: pd.DataFrame) -> plt.Figure:
    """Chinchilla's Approach 2. Left: the reference precision's runs per iso-FLOP group (colour: compute), loss
    against N with each group's fitted parabola in log N and its minimum (star); runs of groups with fewer than
    3 sizes hollow. Right: compute-optimal N and D per group against C with their 95% intervals and the power
    laws N_opt ~ C^a, D_opt ~ C^b (least-squares lines through the groups), per precision; log axes."""
    runs = ladder_runs(ladder).dropna(subset=["loss"])
    fits = fit_rows(scaling_law)
    reference = fits["cfg.reference"].iloc[0]
    groups = iso_flop_groups(scaling_law)
    colors = _palette(runs["precision"])
    figure, (profiles, optima) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    own = groups[groups["precision"] == reference] if len(groups) else groups
    shades = dict(zip(own["compute"], sns.color_palette("viridis", max(len(own), 1)), strict=False)) if len(own) else {}
    for _, group in own.iterrows():
        members = runs[runs["run_id"].isin(group["run_ids"])].sort_values("n_params")
        shade, label = shades[group["compute"]], f"C ≈ {EngFormatter(unit='FLOP', places=1)(group['compute'])}"
        fitted = group["status"] == OK
        profiles.plot(
            members["n_params"],
            members["loss"],
            "o",
            color=shade,
            markerfacecolor=shade if fitted else "none",
            label=label + ("" if fitted else f" ({group['sizes']} size{'s' * (group['sizes'] != 1)})"),
        )
        if np.isfinite(group["n_opt"]) and group["curvature"] > 0:
            n = np.geomspace(members["n_params"].min() / 1.2, members["n_params"].max() * 1.2, 80)
            log_loss = math.log(group["loss_opt"]) + group["curvature"] * (np.log(n) - math.log(group["n_opt"])) ** 2
            profiles.plot(n, np.exp(log_loss), "-", color=shade, linewidth=1)
            profiles.plot(group["n_opt"], group["loss_opt"], "*", color=shade, markersize=13, markeredgecolor="k")
    if len(own):
        _log_axes(profiles, "")
        profiles.legend(fontsize=7, title=f"{reference} iso-FLOP groups (C = 6ND)", title_fontsize=7)
    else:
        profiles.text(0.5, 0.5, f"no {reference} iso-FLOP groups", transform=profiles.transAxes, ha="center")
    profiles.set_xlabel("non-embedding parameters N")
    profiles.set_ylabel("final validation loss (nats)")
    usable = own[own["status"] == OK] if len(own) else own
    profiles.set_title(
        f"iso-FLOP profiles, parabola in log N, star at its minimum\n{len(usable)} of {len(own)} {reference} groups "
        f"with 3+ sizes and a minimum among them (hollow: too few sizes)",
        fontsize=9,
    )
    summary = fits[(fits["metric"] == "fit_parameter") & (fits["label.fit"] == "iso_flop")]
    summary = summary[summary["label.compute"].isna()] if "label.compute" in summary else summary
    drawn = False
    for precision, part in groups[groups["status"] == OK].groupby("precision", sort=False) if len(groups) else []:
        compute = part["compute"].to_numpy(float)
        for column, marker, style in (("n_opt", "o", "-"), ("d_opt", "s", "--")):
            values = part[column].to_numpy(float)
            low = part[f"{column}_low"].to_numpy(float) if f"{column}_low" in part else values
            high = part[f"{column}_high"].to_numpy(float) if f"{column}_high" in part else values
            errors = np.array(
                [values - np.where(np.isfinite(low), low, values), np.where(np.isfinite(high), high, values) - values]
            )
            optima.errorbar(compute, values, yerr=errors, fmt=marker, color=colors[precision], capsize=2)
            if len(compute) >= 2:
                slope = np.polyfit(np.log(compute), np.log(values), 1)[0]
                line = np.exp(np.log(values).mean() + slope * (np.log(compute) - np.log(compute).mean()))
                optima.plot(compute, line, style, color=colors[precision], linewidth=1)
            drawn = True
    if drawn:
        _log_axes(optima, "FLOP")
        optima.set_yscale("log")
        optima.yaxis.set_major_formatter(EngFormatter())
    else:
        reason = summary["label.fit_reason"].dropna().astype(str)
        text = reason.iloc[0] if len(reason) else "no Approach 2 rows"
        optima.text(
            0.5, 0.5, "\n".join(_wrap(text, 60)), transform=optima.transAxes, ha="center", va="center", fontsize=8
        )
        optima.set_xticks([])
        optima.set_yticks([])
    optima.set_xlabel("training compute C = 6ND (FLOP)")
    optima.set_ylabel("compute-optimal N (circles) and D (squares)")
    optima.set_title(_approach2_title(summary, reference), fontsize=9)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=p) for p, c in colors.items()]
    handles += [
        Line2D([], [], color="0.3", linestyle="-", marker="o", label="N_opt ~ C^a"),
        Line2D([], [], color="0.3", linestyle="--", marker="s", label="D_opt ~ C^b"),
    ]
    figure.legend(handles=handles, loc="outside right center", fontsize=8, title="precision / line")
    figure.suptitle("Chinchilla's Approach 2: iso-FLOP profiles and the compute-optimal allocation")
    return figure


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def _approach2_title(summary: pd.DataFrame, reference: str) -> str:
    """The reference precision's Approach 2 summary: a, b and tokens per parameter with 95% intervals."""
    own = summary[summary["label.precision"] == reference].set_index("label.parameter")
    parts = []
    for name, symbol in (("n_opt_exponent", "a"), ("d_opt_exponent", "b"), ("tokens_per_parameter", "D/N")):
        if name in own.index and np.isfinite(own.loc[name, "value"]):
            low, high = own.loc[name, "label.interval_low"], own.loc[name, "label.interval_high"]
            interval = f" [{low:.3g}, {high:.3g}]" if np.isfinite(low) else ""
            parts.append(f"{symbol} = {own.loc[name, 'value']:.3g}{interval}")
    paper = "Hoffmann et al.: a 0.49, b 0.51, D/N about 20"
    if not parts:
        return f"no compute-optimal allocation\n({paper})"
    return f"{reference}: {', '.join(parts)}\n({paper})"
