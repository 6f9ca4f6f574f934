"""Figures and table of the distributed studies: ZeRO's model-state memory per process against the number of
data-parallel processes by stage, beside the formula, with the peak RSS and the sharded runs' loss against
DDP's (zero_memory); and the bytes 1-bit Adam and Adam send per step over training, with their losses
(comm_compression)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

STAGE_LABELS = {
    "ddp": "DDP",
    "zero1": "ZeRO-1 (optimizer states)",
    "zero2": "ZeRO-2 (+ gradients)",
    "zero3": "ZeRO-3 (+ parameters)",
}
OPTIMIZER_LABELS = {"adam": "Adam (fp32 all-reduce)", "onebit_adam": "1-bit Adam"}


def _per_run(rows: pd.DataFrame, metric: str) -> pd.Series:
    """One value per run id: the mean of its rows of `metric`."""
    return rows[rows["metric"] == metric].groupby("id")["value"].mean()


def zero_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per zero_memory run of its rows: strategy, processes, seed, the model-state bytes per process
    (mean, least, largest), the formula's, parameters, peak RSS and RSS growth of the largest process, final
    losses."""
    runs = rows.groupby("id")[["cfg.strategy", "cfg.processes", "cfg.seed"]].first()
    states = rows[rows["metric"] == "model_state_bytes"].groupby("id")["value"]
    runs = runs.assign(
        state_mean=states.mean(),
        state_min=states.min(),
        state_max=states.max(),
        formula=_per_run(rows, "model_state_formula_bytes"),
        parameters=_per_run(rows, "parameters"),
        peak_rss=_per_run(rows, "peak_rss_max"),
        rss_growth=_per_run(rows, "rss_growth_max"),
        final_train_loss=_per_run(rows, "final_train_loss"),
        final_val_loss=_per_run(rows, "final_val_loss"),
    )
    runs = runs.rename(columns={"cfg.strategy": "strategy", "cfg.processes": "processes", "cfg.seed": "seed"})
    runs["processes"] = runs["processes"].astype(int)
    order = {s: i for i, s in enumerate(STAGE_LABELS)}
    return runs.sort_values(["strategy", "processes"], key=lambda c: c.map(order) if c.name == "strategy" else c)


def zero_memory_figure(zero_memory: pd.DataFrame) -> plt.Figure:
    """Three panels: model-state bytes per process against N_d by stage (points: counted, the bar from the least
    to the largest process; lines: ZeRO's formula); the growth of the peak RSS over the run (model building and
    training) of the largest process; the training loss of each stage at the largest N_d against DDP's."""
    runs = zero_runs(zero_memory)
    palette = dict(zip(STAGE_LABELS, sns.color_palette("colorblind", len(STAGE_LABELS)), strict=True))
    figure, (memory, rss, loss) = plt.subplots(1, 3, figsize=(15, 4.4))
    for strategy, group in runs.groupby("strategy", sort=False):
        color, label = palette.get(strategy, "0.3"), STAGE_LABELS.get(strategy, strategy)
        group = group.sort_values("processes")
        memory.plot(group["processes"], group["formula"] / 1e3, "-", color=color, alpha=0.6)
        memory.errorbar(
            group["processes"],
            group["state_mean"] / 1e3,
            yerr=[(group["state_mean"] - group["state_min"]) / 1e3, (group["state_max"] - group["state_mean"]) / 1e3],
            fmt="o",
            color=color,
            capsize=3,
            label=label,
        )
        rss.plot(group["processes"], group["rss_growth"], "o-", color=color, label=label)
    memory.plot([], [], "-", color="0.4", label="ZeRO's formula (fp32 Adam: 4+4+8 bytes/param)")
    psi = int(runs["parameters"].iloc[0])
    for axis in (memory, rss):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(runs["processes"].unique()), [str(n) for n in sorted(runs["processes"].unique())])
        axis.set_xlabel("data-parallel processes N_d")
        axis.grid(alpha=0.3)
    memory.set_ylabel("model-state bytes per process (kB)")
    memory.set_title(f"Counted model states (Psi = {psi:,} parameters)", fontsize=10)
    memory.legend(fontsize=7)
    rss.set_ylabel("peak RSS growth over the run, largest process (MiB)")
    rss.set_title("Measured peak RSS above each process's start", fontsize=10)
    largest = runs["processes"].max()
    curves = zero_memory[
        (zero_memory["metric"] == "train_loss") & (zero_memory["cfg.processes"].astype(int) == largest)
    ]
    ddp = curves[curves["cfg.strategy"] == "ddp"]
    reference = ddp.set_index(ddp["label.step"].astype(int))["value"]
    for strategy, group in curves.groupby("cfg.strategy", sort=False):
        group = group.assign(step=group["label.step"].astype(int)).sort_values("step")
        gap = (group.set_index("step")["value"] - reference).abs().max() if len(reference) else float("nan")
        style = "-" if strategy == "ddp" else "--"
        label = f"{STAGE_LABELS.get(strategy, strategy)}: max |loss - DDP| = {gap:.1e}"
        loss.plot(group["step"], group["value"], style, color=palette.get(strategy, "0.3"), label=label)
    loss.set_xlabel("step")
    loss.set_ylabel("training loss (nats/token)")
    loss.set_title(f"Loss on {largest} processes, same seed and data", fontsize=10)
    loss.legend(fontsize=7)
    loss.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def zero_memory_table(zero_memory: pd.DataFrame) -> pd.DataFrame:
    """Per stage and N_d: model-state bytes per process (mean and largest), the formula's, their ratio, peak RSS
    and RSS growth of the largest process, final training loss and its difference from DDP's."""
    runs = zero_runs(zero_memory)
    ddp = runs[runs["strategy"] == "ddp"].set_index("processes")["final_train_loss"]
    table = runs.assign(
        stage=runs["strategy"].map(lambda s: STAGE_LABELS.get(s, s)),
        counted_vs_formula=runs["state_mean"] / runs["formula"],
        loss_minus_ddp=runs["final_train_loss"] - runs["processes"].map(ddp),
    )
    columns = {
        "state_mean": "model_state_bytes_mean",
        "state_max": "model_state_bytes_max",
        "formula": "formula_bytes",
        "counted_vs_formula": "counted_vs_formula",
        "peak_rss": "peak_rss_mib",
        "rss_growth": "rss_growth_mib",
        "final_train_loss": "final_train_loss",
        "loss_minus_ddp": "loss_minus_ddp",
    }
    return table.set_index(["stage", "processes"])[list(columns)].rename(columns=columns)


def comm_bytes_figure(comm_compression: pd.DataFrame) -> plt.Figure:
    """Two panels: bytes each process sends per step over training (Adam and 1-bit Adam, every seed; log scale),
    and the training loss of the same runs."""
    palette = dict(zip(OPTIMIZER_LABELS, sns.color_palette("colorblind", 2), strict=True))
    figure, (sent, loss) = plt.subplots(1, 2, figsize=(12, 4.4))
    warmup = None
    for (strategy, seed), group in comm_compression.groupby(["cfg.strategy", "cfg.seed"], sort=True):
        color, name = palette.get(strategy, "0.3"), OPTIMIZER_LABELS.get(strategy, strategy)
        style = "-" if int(seed) == 0 else ":"
        total = group.loc[group["metric"] == "total_bytes_sent", "value"].mean()
        steps = group[group["metric"] == "bytes_sent"].assign(step=lambda g: g["label.step"].astype(int))
        steps = steps.sort_values("step")
        sent.plot(
            steps["step"],
            steps["value"] / 1e3,
            style,
            color=color,
            label=f"{name}, seed {int(seed)}: {total / 1e6:.2f} MB in all",
        )
        curve = group[group["metric"] == "train_loss"].assign(step=lambda g: g["label.step"].astype(int))
        curve = curve.sort_values("step")
        loss.plot(curve["step"], curve["value"], style, color=color, label=f"{name}, seed {int(seed)}")
        if strategy == "onebit_adam":
            warmup = round(float(group["cfg.warmup_fraction"].iloc[0]) * int(group["cfg.steps"].iloc[0]))
    for axis in (sent, loss):
        if warmup:
            axis.axvline(warmup, color="0.5", lw=0.8)
            axis.annotate(" end of warm-up", (warmup, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=8)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    processes = int(comm_compression["cfg.processes"].iloc[0])
    sent.set_yscale("log")
    sent.set_ylabel("bytes sent per process per step (kB)")
    sent.set_title(f"Communication per step ({processes} processes)", fontsize=10)
    sent.legend(fontsize=7)
    loss.set_ylabel("training loss (nats/token)")
    loss.set_title("Training loss, seed by seed", fontsize=10)
    loss.legend(fontsize=7)
    figure.tight_layout()
    return figure
