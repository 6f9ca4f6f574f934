"""Figures and tables of the training studies: loss curves and the recipe table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

SUMMARY_METRICS = {
    "final_val_loss": "val loss (nats)",
    "final_val_bits_per_byte": "val bits/byte",
    "tokens_per_s": "tokens/s",
    "mfu": "MFU",
    "cold_start_step": "first step (s)",
    "peak_memory": "peak RSS (MiB)",
    "optimizer_state_bytes_per_parameter": "optimizer state (B/param)",
}


def _runs(train: pd.DataFrame) -> pd.DataFrame:
    return train.rename(columns={"cfg.recipe.name": "recipe", "cfg.model.name": "model"})


def loss_figure(train: pd.DataFrame) -> plt.Figure:
    """Validation and training loss against training tokens, one line per recipe (diverged runs dashed)."""
    runs = _runs(train)
    curves = runs[runs["metric"].isin(["train_loss", "val_loss"])].copy()
    tokens_per_step = curves["cfg.batch_size"] * curves["cfg.model.context_length"]
    curves["tokens"] = curves["label.step"].astype(float) * tokens_per_step / 1e6
    curves["curve"] = curves["metric"].map({"train_loss": "training (batch)", "val_loss": "validation"})
    grid = sns.relplot(
        data=curves,
        kind="line",
        x="tokens",
        y="value",
        hue="recipe",
        col="curve",
        col_order=["validation", "training (batch)"],
        style="status",
        markers=True,
        dashes={"ok": "", "diverged": (2, 2)},
        palette="colorblind",
        height=3.8,
        aspect=1.15,
        facet_kws={"sharey": False},
    )
    grid.set_axis_labels("training tokens (millions)", "loss (nats/token)")
    grid.set_titles("{col_name} loss")
    for axis in grid.axes.flat:
        axis.grid(alpha=0.3)
    model = ", ".join(sorted(runs["model"].dropna().unique()))
    grid.figure.suptitle(f"Training with precision recipes ({model})", y=1.03)
    return grid.figure


def recipe_table(train: pd.DataFrame) -> pd.DataFrame:
    """Per run: recipe, arithmetic (emulated or native), status, final losses, throughput, MFU, memory."""
    runs = _runs(train)
    summary = runs[runs["metric"].isin(SUMMARY_METRICS)].pivot_table(
        index=["model", "recipe", "status"], columns="metric", values="value", aggfunc="first"
    )
    summary = summary.rename(columns=SUMMARY_METRICS)
    arithmetic = runs[runs["metric"] == "emulated"].groupby(["model", "recipe", "status"])["label.arithmetic"].first()
    summary.insert(0, "arithmetic", arithmetic)
    messages = runs.groupby(["model", "recipe", "status"])["message"].first()
    summary["message"] = messages
    return summary.sort_values("val loss (nats)")
