"""Figures and tables of the numerics studies."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def qsnr_frame(results: pd.DataFrame) -> pd.DataFrame:
    """One row per successful numerics run: format, distribution, rotation, bits/element and QSNR."""
    runs = results[(results["kind"] == "numerics") & (results["status"] == "ok")]
    wide = runs.pivot_table(
        index=["id", "cfg.format.name", "cfg.distribution.name", "cfg.rotation"],
        columns="metric",
        values="value",
        aggfunc="first",
    ).reset_index()
    return wide.rename(
        columns={
            "cfg.format.name": "format",
            "cfg.distribution.name": "distribution",
            "cfg.rotation": "rotation",
        }
    )


def qsnr_figure(results: pd.DataFrame) -> plt.Figure:
    """QSNR per format (ordered by bits/element) and distribution, one panel per rotation."""
    frame = qsnr_frame(results)
    order = frame.sort_values(["bits_per_element", "format"], ascending=[False, True])["format"].unique()
    grid = sns.catplot(
        data=frame,
        kind="bar",
        y="format",
        x="qsnr_db",
        hue="distribution",
        col="rotation",
        order=order,
        height=0.32 * len(order) + 2.5,
        aspect=0.9,
        palette="colorblind",
        legend_out=True,
    )
    grid.set_axis_labels("QSNR (dB), higher is better", "format")
    grid.set_titles("rotation: {col_name}")
    for axis in grid.axes.flat:
        axis.grid(axis="x", alpha=0.3)
    grid.figure.suptitle("Quantization SNR of number formats on synthetic data", y=1.02)
    return grid.figure


def qsnr_table(results: pd.DataFrame) -> pd.DataFrame:
    """QSNR (dB): formats x (distribution, rotation), with bits per element."""
    frame = qsnr_frame(results)
    table = frame.pivot_table(index="format", columns=["distribution", "rotation"], values="qsnr_db")
    table.columns = [f"{d} ({r})" for d, r in table.columns]
    bits = frame.groupby("format")["bits_per_element"].first()
    table.insert(0, "bits_per_element", bits)
    return table.sort_values(["bits_per_element"], ascending=False)
