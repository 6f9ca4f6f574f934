"""Figures and tables of the numerics studies, each drawn from the rows of the studies it reads
(tradeoffs.report.FIGURES, TABLES)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from tradeoffs.report.frames import crest_frame

RUN_METRICS = ["qsnr_db", "relative_mse", "bias", "alignment", "bits_per_element"]
# The INT-vs-FP paper's crossover crest factors (claims.md), shown beside ours.
PAPER_CROSSOVER = {
    ("mxint8", "mxfp8_e4m3"): 7.55,
    ("mxint6", "mxfp6_e2m3"): 1.96,
    ("mxint4", "mxfp4"): 2.04,
    ("nvint4", "nvfp4"): 2.39,
}


def qsnr_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per successful run of a numerics study (its rows): format, distribution, rotation, QSNR and
    friends."""
    runs = rows[rows["metric"].isin(RUN_METRICS)]
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


def _bar_panels(
    frame: pd.DataFrame, x: str, hue: str, xlabel: str, title: str, order=None, hue_order=None
) -> plt.Figure:
    """Horizontal bars of `x` per format, coloured by `hue`, one panel per rotation (none first)."""
    formats = order if order is not None else sorted(frame["format"].unique())
    grid = sns.catplot(
        data=frame,
        kind="bar",
        y="format",
        x=x,
        hue=hue,
        hue_order=hue_order,
        col="rotation",
        col_order=[r for r in ("none", "hadamard", "random_hadamard") if r in set(frame["rotation"])],
        order=formats,
        height=0.32 * len(formats) + 2.5,
        aspect=0.9,
        palette="colorblind",
    )
    grid.set_axis_labels(xlabel, "format")
    grid.set_titles("rotation: {col_name}")
    for axis in grid.axes.flat:
        axis.grid(axis="x", alpha=0.3)
    grid.figure.suptitle(title, y=1.03)
    return grid.figure


def qsnr_figure(numerics: pd.DataFrame) -> plt.Figure:
    """QSNR per format (ordered by bits/element) and distribution, one panel per rotation."""
    frame = qsnr_frame(numerics)
    order = list(frame.sort_values(["bits_per_element", "format"], ascending=[False, True])["format"].unique())
    return _bar_panels(
        frame, "qsnr_db", "distribution", "QSNR (dB), higher is better",
        "Quantization SNR of number formats on synthetic data", order=order,
    )  # fmt: skip


def qsnr_table(numerics: pd.DataFrame) -> pd.DataFrame:
    """QSNR (dB): formats x (distribution, rotation), with bits per element."""
    frame = qsnr_frame(numerics)
    table = frame.pivot_table(index="format", columns=["distribution", "rotation"], values="qsnr_db")
    table.columns = [f"{d} ({r})" for d, r in table.columns]
    bits = frame.groupby("format")["bits_per_element"].first()
    table.insert(0, "bits_per_element", bits)
    return table.sort_values(["bits_per_element"], ascending=False)


def _crossover_runs(crossover: pd.DataFrame) -> pd.DataFrame:
    return crossover.rename(columns={"cfg.int_format.name": "int_format", "cfg.fp_format.name": "fp_format"})


def _mc_crossover(mc: pd.DataFrame, int_format: str, fp_format: str) -> tuple[float, float]:
    """(crest factor where the pooled Monte-Carlo QSNRs of the pair cross, by linear interpolation of their
    difference over shared bins, NaN if they do not; share of shared bins where INT wins)."""
    pair = mc[mc["format"].isin([int_format, fp_format])].pivot_table(index="crest", columns="format", values="qsnr_db")
    if int_format not in pair or fp_format not in pair:
        return float("nan"), float("nan")
    gap = (pair[int_format] - pair[fp_format]).dropna()
    if gap.empty:
        return float("nan"), float("nan")
    crossing = float("nan")
    signs = np.sign(gap.to_numpy())
    changes = np.nonzero(signs[:-1] * signs[1:] < 0)[0]
    if len(changes):
        i = changes[0]
        x0, x1, y0, y1 = gap.index[i], gap.index[i + 1], gap.iloc[i], gap.iloc[i + 1]
        crossing = float(x0 - y0 * (x1 - x0) / (y1 - y0))
    return crossing, float((gap > 0).mean())


def crossover_table(crossover: pd.DataFrame, numerics: pd.DataFrame) -> pd.DataFrame:
    """Per INT/FP pair: the model's crossover crest factor, the paper's, and what Monte-Carlo bins show."""
    runs = _crossover_runs(crossover)
    mc = crest_frame(numerics)
    rows = []
    for (int_format, fp_format), group in runs.groupby(["int_format", "fp_format"]):
        theory = group.loc[group["metric"] == "crossover_crest", "value"].iloc[0]
        mc_crossing, int_share = _mc_crossover(mc, int_format, fp_format)
        rows.append(
            {
                "int_format": int_format,
                "fp_format": fp_format,
                "crossover_theory": theory,
                "crossover_paper": PAPER_CROSSOVER.get((int_format, fp_format), float("nan")),
                "crossover_monte_carlo": mc_crossing,
                "int_wins_share_of_bins": int_share,
            }
        )
    return pd.DataFrame(rows).set_index(["int_format", "fp_format"])


def _block_reach(group: pd.DataFrame) -> float:
    """sqrt(block size), the largest crest factor a block can have (inf for per-tensor/channel scales)."""
    first = group.iloc[0]
    if first.get("cfg.int_format.granularity") != "block":
        return np.inf
    return float(np.sqrt(first["cfg.int_format.block_size"]))


def crest_figure(crossover: pd.DataFrame, numerics: pd.DataFrame) -> plt.Figure:
    """QSNR against block crest factor: the paper's model (lines) and pooled Monte-Carlo bins (markers),
    one panel per INT/FP pair, with the model's crossover marked."""
    runs = _crossover_runs(crossover)
    mc = crest_frame(numerics)
    pairs = list(runs.groupby(["int_format", "fp_format"]))
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.7 * rows), squeeze=False)
    palette = sns.color_palette("colorblind", 2)
    for axis, ((int_format, fp_format), group) in zip(axes.flat, pairs, strict=False):
        curves = group[group["metric"] == "qsnr_theory_db"]
        reach = _block_reach(group)
        for color, name in zip(palette, (int_format, fp_format), strict=True):
            curve = curves[curves["label.format"] == name].sort_values("label.crest")
            crest = curve["label.crest"].astype(float)
            axis.plot(crest, curve["value"], color=color, label=f"{name} (model)")
            points = mc[mc["format"] == name]
            axis.scatter(points["crest"], points["qsnr_db"], color=color, s=14, marker="o", label=f"{name} (measured)")
        right = float(curves["label.crest"].astype(float).max())
        if reach < right:
            axis.axvspan(reach, right, color="0.92", zorder=0, label=f"unreachable (> sqrt(block) = {reach:.2f})")
        axis.set_xlim(1, right)
        crossing = group.loc[group["metric"] == "crossover_crest", "value"].iloc[0]
        axis.axvline(crossing, color="0.4", linestyle=":", label=f"model crossover {crossing:.2f}")
        axis.set_title(f"{int_format} vs {fp_format}")
        axis.set_xlabel("crest factor max|x| / rms(x) of a scale granule")
        axis.set_ylabel("QSNR (dB)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    for axis in axes.flat[len(pairs) :]:
        axis.set_visible(False)
    figure.suptitle("INT vs FP: QSNR against crest factor, model and Monte-Carlo", y=1.0)
    figure.tight_layout()
    return figure


def quantizer_table(quantizer: pd.DataFrame) -> pd.DataFrame:
    """The quantizer study: relative MSE, bias and alignment per format variant, distribution, rotation."""
    frame = qsnr_frame(quantizer)
    table = frame.set_index(["format", "distribution", "rotation"])[["relative_mse", "bias", "alignment", "qsnr_db"]]
    return table.sort_index()


def quantizer_figure(quantizer: pd.DataFrame) -> plt.Figure:
    """Relative MSE of each MXFP4/NVFP4 quantizer variant per distribution, one panel per rotation."""
    return _bar_panels(
        qsnr_frame(quantizer), "relative_mse", "distribution", "relative MSE (lower is better)",
        "MXFP4 and NVFP4 quantizers: scale rule, scale format, rounding, RMS clipping",
    )  # fmt: skip


def lmul_frame(lmul: pd.DataFrame) -> pd.DataFrame:
    """The L-Mul study's rows (of its mean relative error) with multiplier and operands named."""
    return lmul.rename(columns={"label.multiplier": "multiplier", "cfg.operands": "operands"})


def lmul_table(lmul: pd.DataFrame) -> pd.DataFrame:
    """Mean relative error of each multiplier (L-Mul widths, FP8 formats) per operand distribution."""
    return lmul_frame(lmul).pivot_table(index="multiplier", columns="operands", values="value").sort_index()


def lmul_figure(lmul: pd.DataFrame) -> plt.Figure:
    """Mean relative product error of L-Mul (2-5 mantissa bits) and FP8 multiplies, per operand distribution."""
    frame = lmul_frame(lmul)
    figure, axis = plt.subplots(figsize=(7, 3.8))
    order = sorted(frame["multiplier"].unique(), key=lambda m: (not m.startswith("lmul"), m))
    sns.barplot(data=frame, x="multiplier", y="value", hue="operands", order=order, palette="colorblind", ax=axis)
    axis.set_yscale("log")
    axis.set_xlabel("multiplier (L-Mul with m mantissa bits, or exact FP8 multiply with rounding)")
    axis.set_ylabel("mean relative error of x*y (log)")
    axis.grid(axis="y", alpha=0.3, which="both")
    axis.set_title("L-Mul against FP8 multiplication on random operands")
    return figure


def capture_frame(capture: pd.DataFrame) -> pd.DataFrame:
    """Pooled QSNR per (format, rotation, tensor role) over every Linear of the captured model."""
    runs = capture[(capture["metric"] == "qsnr_db") & (capture["label.tensor"] == "all")]
    return runs.rename(
        columns={"cfg.format.name": "format", "cfg.rotation": "rotation", "label.role": "role", "value": "qsnr_db"}
    )


def capture_figure(capture: pd.DataFrame) -> plt.Figure:
    """QSNR of each format on a trained model's weights, activations and gradients, per rotation."""
    source = ", ".join(sorted(capture["cfg.source_id"].dropna().unique()))
    return _bar_panels(
        capture_frame(capture), "qsnr_db", "role", "QSNR (dB), higher is better",
        f"QSNR on tensors captured from a trained model ({source})", hue_order=["weight", "activation", "gradient"],
    )  # fmt: skip


def capture_table(capture: pd.DataFrame) -> pd.DataFrame:
    """Pooled QSNR (dB): formats x (role, rotation)."""
    table = capture_frame(capture).pivot_table(index="format", columns=["role", "rotation"], values="qsnr_db")
    table.columns = [f"{role} ({rotation})" for role, rotation in table.columns]
    return table
