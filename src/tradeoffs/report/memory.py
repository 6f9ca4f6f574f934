"""Figures and tables of the single-process memory studies (docs/memory.md): attention memory and time over
sequence lengths (attention_memory), the recomputation trade-off (recompute) and FP8 activation storage
(fp8_activations)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter

BACKEND_NAMES = {
    "flash": "SDPA flash (fused)",
    "efficient": "SDPA efficient (fused)",
    "math": "SDPA math",
    "explicit": "explicit softmax(QK^T)V",
}
STORAGE_NAMES = {"bf16": "BF16 activations", "fp8": "FP8 activations", "fp32": "FP32 activations"}
ROLE_NAMES = {
    "linear_input": "Linear inputs",
    "activation": "other activations",
    "other": "kept as computed",
    "model_state_bytes": "model states",
}


def _metric(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    return rows[rows["metric"] == name]


def _log_axes(axis: plt.Axes, lengths: list[float], y_unit: str) -> None:
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks(lengths)
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.yaxis.set_major_locator(LogLocator(subs=(1, 3)))
    axis.yaxis.set_major_formatter(EngFormatter(unit=y_unit))
    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.grid(alpha=0.3, which="both")


def _slope_text(slopes: pd.DataFrame, backend: str, measure: str | None = None) -> str:
    rows = slopes[slopes["label.backend"] == backend]
    if measure is not None:
        rows = rows[rows["label.measure"] == measure]
    if rows.empty or not np.isfinite(rows["value"].iloc[0]):
        return ""
    half = (rows["label.interval_high"].astype(float) - rows["label.interval_low"].astype(float)).iloc[0] / 2
    return f"slope {rows['value'].iloc[0]:.2f} ± {half:.2f}"


def attention_figure(attention_memory: pd.DataFrame) -> plt.Figure:
    """Per run (hardware, dtype): saved-for-backward bytes (solid) and measured peak (dashed), and forward +
    backward time, against sequence length on log-log axes, one colour per implementation, fitted slopes in
    the legends."""
    runs = list(attention_memory.groupby("id", sort=True))
    figure, axes = plt.subplots(len(runs), 2, figsize=(12, 4.4 * len(runs)), squeeze=False)
    palette = dict(zip(BACKEND_NAMES, sns.color_palette("colorblind"), strict=False))
    for (_, run), (memory_axis, time_axis) in zip(runs, axes, strict=True):
        slopes, time_slopes = _metric(run, "memory_slope"), _metric(run, "time_slope")
        for backend in [b for b in BACKEND_NAMES if b in set(run["label.backend"].dropna())]:
            mine = run[run["label.backend"] == backend]
            color, name = palette[backend], BACKEND_NAMES[backend]
            saved = _metric(mine, "saved_bytes").assign(x=lambda f: f["label.length"].astype(float)).sort_values("x")
            peak = _metric(mine, "peak_bytes").assign(x=lambda f: f["label.length"].astype(float)).sort_values("x")
            if saved.empty:
                continue
            memory_axis.plot(
                saved["x"],
                saved["value"],
                "o-",
                color=color,
                label=f"{name}: saved, {_slope_text(slopes, backend, 'saved')}",
            )
            memory_axis.plot(
                peak["x"],
                peak["value"],
                "s--",
                color=color,
                alpha=0.7,
                markerfacecolor="none",
                label=f"{name}: peak, {_slope_text(slopes, backend, 'peak')}",
            )
            timing = _metric(mine, "time_median_s").assign(x=lambda f: f["label.length"].astype(float)).sort_values("x")
            time_axis.plot(
                timing["x"], timing["value"], "o-", color=color, label=f"{name}, {_slope_text(time_slopes, backend)}"
            )
        missing = sorted(set(_metric(run, "supported").query("value == 0")["label.backend"]))
        cfg = run.iloc[0]
        shape = f"batch {int(cfg['cfg.batch_size'])}, {int(cfg['cfg.n_head'])} head(s) of {int(cfg['cfg.head_dim'])}"
        title = f"{cfg['cfg.hardware.name']}, {cfg['cfg.dtype']}, {shape}"
        if missing:
            title += f"\nnot available here: {', '.join(missing)}"
        for axis, unit, label in (
            (memory_axis, "B", "memory of forward + backward (bytes)"),
            (time_axis, "s", "forward + backward time (s, median)"),
        ):
            _log_axes(axis, sorted(_metric(run, "saved_bytes")["label.length"].astype(float).unique()), unit)
            axis.set_xlabel("sequence length (tokens)")
            axis.set_ylabel(label)
            axis.set_title(title, fontsize=9)
            axis.legend(fontsize=7, loc="upper left")
        memory_axis.text(
            0.99,
            0.02,
            "solid: saved for backward (exact)\ndashed: measured peak",
            transform=memory_axis.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
        )
    figure.suptitle("Attention memory and time against sequence length (FlashAttention: linear vs quadratic memory)")
    figure.tight_layout()
    return figure


def attention_table(attention_memory: pd.DataFrame) -> pd.DataFrame:
    """Per run and implementation: the kernel that ran, fitted log-log slopes of saved bytes, peak and time (with
    two-standard-error intervals), saved bytes (and the fused kernels' formula) and time at the longest length, the
    largest relative difference
    from the float64 reference, and the speed-up growth over math and explicit attention."""
    records = []
    for (run_id, backend), mine in attention_memory.groupby(["id", "label.backend"], sort=False):
        supported = _metric(mine, "supported")
        record = {"dtype": mine["cfg.dtype"].iloc[0], "implementation": BACKEND_NAMES[backend], "run": run_id}
        if not supported.empty and supported["value"].max() == 0:
            record["kernel"] = "unsupported: " + str(supported["label.reason"].iloc[0])[:80]
            records.append(record)
            continue
        record["kernel"] = supported["label.kernel"].dropna().iloc[0] if "label.kernel" in supported else ""
        for measure in ("saved", "peak"):
            slope = _metric(mine, "memory_slope").query(f"`label.measure` == '{measure}'")
            record[f"{measure} slope"] = slope["value"].iloc[0] if len(slope) else np.nan
        time_slope = _metric(mine, "time_slope")
        record["time slope"] = time_slope["value"].iloc[0] if len(time_slope) else np.nan
        longest = _metric(mine, "saved_bytes")["label.length"].astype(float).max()
        at_longest = mine[mine["label.length"].astype(float) == longest]
        record["longest length"] = int(longest)
        record["saved MB at longest"] = _metric(at_longest, "saved_bytes")["value"].sum() / 1e6
        formula = _metric(at_longest, "formula_saved_bytes")["value"]
        record["formula MB at longest"] = formula.sum() / 1e6 if len(formula) else np.nan
        record["time ms at longest"] = _metric(at_longest, "time_median_s")["value"].sum() * 1e3
        record["max rel. diff"] = _metric(mine, "max_rel_diff")["value"].max()
        for baseline in ("math", "explicit"):
            growth = _metric(mine, "speedup_growth")
            growth = growth[growth["label.baseline"] == baseline]
            if len(growth):
                record[f"speed-up growth vs {baseline}"] = growth["value"].iloc[0]
        records.append(record)
    return pd.DataFrame(records).set_index(["dtype", "implementation"])


def _recompute_runs(rows: pd.DataFrame) -> pd.DataFrame:
    wide = rows[rows["label.recompute"].isna()].pivot_table(index="id", columns="metric", values="value")
    config = rows.groupby("id")[["cfg.model.n_layer", "cfg.model.context_length", "cfg.batch_size"]].first()
    return wide.join(config).rename(
        columns={"cfg.model.n_layer": "layers", "cfg.model.context_length": "length", "cfg.batch_size": "batch"}
    )


def recompute_figure(recompute: pd.DataFrame) -> plt.Figure:
    """The recomputation trade-off per run (depth x length): activation memory saved (exact saved bytes, and
    the measured peak) against the step time added, with Megatron's one extra forward (+33%) marked."""
    runs = _recompute_runs(recompute)
    figure, axis = plt.subplots(figsize=(7.5, 5))
    colors = dict(zip(sorted(runs["layers"].unique()), sns.color_palette("colorblind"), strict=False))
    markers = dict(zip(sorted(runs["length"].unique()), "osD^v", strict=False))
    for _, run in runs.iterrows():
        added = 100 * (run["time_ratio"] - 1)
        label = f"{int(run['layers'])} blocks, {int(run['length'])} tokens"
        axis.plot(
            added,
            100 * (1 - run["saved_ratio"]),
            markers[run["length"]],
            color=colors[run["layers"]],
            ms=8,
            label=label,
        )
        axis.plot(
            added,
            100 * (1 - run["peak_ratio"]),
            markers[run["length"]],
            color=colors[run["layers"]],
            ms=8,
            markerfacecolor="none",
        )
    axis.axvline(100 / 3, color="grey", ls="--", lw=1)
    axis.text(100 / 3, 2, " one extra forward (+33%)", color="grey", fontsize=8, rotation=90, va="bottom")
    axis.set_xlabel("step time added by recomputation (%, forward + backward, median)")
    axis.set_ylabel("activation memory saved (%)")
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, title="filled: saved bytes (exact)\nhollow: measured peak", title_fontsize=8)
    batch = ", ".join(str(int(b)) for b in sorted(runs["batch"].unique()))
    axis.set_title(f"Per-block activation recomputation (Megatron-LM), batch {batch}", fontsize=10)
    figure.tight_layout()
    return figure


def recompute_table(recompute: pd.DataFrame) -> pd.DataFrame:
    """Per run: saved bytes and peak with and without recomputation, step times, their ratios, MFU and HFU."""
    modes = recompute[recompute["label.recompute"].notna()].pivot_table(
        index="id", columns=["metric", "label.recompute"], values="value"
    )
    table = pd.DataFrame(index=modes.index)
    for mode in ("off", "on"):
        table[f"saved MB ({mode})"] = modes[("saved_bytes", mode)] / 1e6
        table[f"peak MB ({mode})"] = modes[("peak_bytes", mode)] / 1e6
        table[f"time ms ({mode})"] = modes[("time_median_s", mode)] * 1e3
        table[f"MFU ({mode})"] = modes[("mfu", mode)]
        table[f"HFU ({mode})"] = modes[("hfu", mode)]
    runs = _recompute_runs(recompute)
    for column in ("layers", "length", "time_ratio", "saved_ratio", "peak_ratio", "hfu_ratio", "mfu_ratio"):
        table[column.replace("_", " ")] = runs[column]
    return table.sort_values(["layers", "length"])


def _fp8_runs(rows: pd.DataFrame) -> pd.DataFrame:
    wide = rows[rows["label.role"].isna() & rows["label.step"].isna()].pivot_table(
        index="id", columns="metric", values="value"
    )
    roles = _metric(rows, "stored_bytes").pivot_table(index="id", columns="label.role", values="value")
    config = rows.groupby("id")[["cfg.storage", "cfg.recipe.name", "cfg.seed"]].first()
    return (
        wide.join(roles)
        .join(config)
        .rename(columns={"cfg.storage": "storage", "cfg.recipe.name": "states", "cfg.seed": "seed"})
    )


def fp8_activations_figure(fp8_activations: pd.DataFrame) -> plt.Figure:
    """Left: the bytes one training step holds, by part (model states, Linear inputs, other activations, tensors
    kept as computed), for BF16 and FP8 activation storage and COAT's configuration (FP8 activations and
    optimizer states). Right: the final validation loss of FP8 storage relative to BF16 storage, seed by seed,
    against the claim's 1% band."""
    runs = _fp8_runs(fp8_activations)
    figure, (bytes_axis, loss_axis) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.4, 1]})
    order = {("bf16", "fp32"): 0, ("fp8", "fp32"): 1}
    configurations = runs.drop_duplicates(["storage", "states"]).copy()
    configurations["order"] = [order.get((r.storage, r.states), 2) for r in configurations.itertuples()]
    configurations = configurations.sort_values("order")
    parts = ["model_state_bytes", "linear_input", "activation", "other"]
    colors = dict(zip(parts, sns.color_palette("colorblind"), strict=False))
    names = [
        f"{STORAGE_NAMES.get(r.storage, r.storage)}\n{'FP8' if r.states != 'fp32' else 'FP32'} Adam states"
        for r in configurations.itertuples()
    ]
    bottom = np.zeros(len(configurations))
    for part in parts:
        values = configurations[part].to_numpy(float) / 1e6
        bytes_axis.bar(names, values, bottom=bottom, color=colors[part], label=ROLE_NAMES[part])
        bottom += values
    for index, total in enumerate(bottom):
        note = f"{total:.2f} MB" + (f"\nBF16 / this = {bottom[0] / total:.2f}x" if index else "")
        bytes_axis.text(index, total, note, ha="center", va="bottom", fontsize=8)
    bytes_axis.set_ylabel("bytes held for one training step (MB)")
    bytes_axis.set_ylim(0, bottom.max() * 1.3)
    bytes_axis.legend(fontsize=8, loc="upper right")
    bytes_axis.set_title("model states + tensors saved for backward (exact counts)", fontsize=10)
    paired = runs[runs["states"] == "fp32"].pivot_table(index="seed", columns="storage", values="final_val_loss")
    loss_axis.axhspan(-1, 1, color="grey", alpha=0.15, label="within 1% (the claim)")
    loss_axis.axhline(0, color="grey", lw=1, ls="--")
    if {"bf16", "fp8"} <= set(paired.columns):
        change = 100 * (paired["fp8"] / paired["bf16"] - 1)
        loss_axis.bar([f"seed {int(seed)}" for seed in change.index], change, color=colors["linear_input"], width=0.5)
        for index, value in enumerate(change):
            loss_axis.text(
                index, value, f"{value:+.3f}%", ha="center", va="bottom" if value >= 0 else "top", fontsize=8
            )
    loss_axis.set_ylim(-1.5, 1.5)
    loss_axis.set_ylabel("final validation loss, FP8 / BF16 storage - 1 (%)")
    loss_axis.grid(alpha=0.3, axis="y")
    loss_axis.legend(fontsize=8, loc="upper right")
    loss_axis.set_title("same seed, same data: FP8 against BF16 activation storage", fontsize=10)
    figure.suptitle("FP8 storage of the activations saved for backward (COAT)")
    figure.tight_layout()
    return figure


def fp8_activations_table(fp8_activations: pd.DataFrame) -> pd.DataFrame:
    """Per run: storage, optimizer states, seed, bytes by part, training bytes and the final validation loss."""
    runs = _fp8_runs(fp8_activations)
    table = runs[["storage", "states", "seed"]].copy()
    for part in ("linear_input", "activation", "other", "activation_bytes", "model_state_bytes", "training_bytes"):
        table[f"{ROLE_NAMES.get(part, part.replace('_', ' '))} (MB)"] = runs[part] / 1e6
    table["final val loss"] = runs["final_val_loss"]
    return table.sort_values(["states", "storage", "seed"])
