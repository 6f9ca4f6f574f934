"""Figures and tables of the hardware benchmarks (the gemm, bandwidth, qdq and inference kinds): GEMM throughput
by shape and dtype with the percentage of peak, a roofline per hardware, and the quantize-dequantize comparison.

Each point is the median over fresh-process repeats of per-run medians; error bars span the repeats.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from tradeoffs.hardware import GEMM_DTYPES
from tradeoffs.report.frames import hardware_column

DTYPE_ORDER = list(GEMM_DTYPES)
NOISE_RANK = {"ok": 0, "warn": 1, "suspect": 2}


def with_hardware(rows: pd.DataFrame) -> pd.DataFrame:
    """Benchmark rows with a `hardware` column naming the machine of each (tradeoffs.report.frames.hardware_column)."""
    return rows.assign(hardware=hardware_column(rows))


def _worst_noise(flags: pd.Series) -> str:
    flags = flags.dropna()
    return max(flags, key=NOISE_RANK.get) if len(flags) else ""


def gemm_frame(gemm: pd.DataFrame) -> pd.DataFrame:
    """One row per (hardware, dtype, shape) of the GEMM runs' rows: medians over repeats of TFLOP/s, % of peak
    and friends."""
    runs = with_hardware(gemm)
    runs = runs[runs["label.shape"].notna()]
    index = ["hardware", "cfg.dtype", "label.shape", "cfg.repeat", "id"]
    per_run = runs.pivot_table(index=index, columns="metric", values="value", aggfunc="first").reset_index()
    extra = runs.groupby(index).agg(
        noise=("label.noise", _worst_noise),
        peak_tflops=("label.peak_tflops", "max"),
        peak_method=("label.peak_method", "first"),
        kernel=("label.kernel", "first"),
        m=("label.m", "first"),
        k=("label.k", "first"),
        n=("label.n", "first"),
        status=("status", "first"),
    )
    per_run = per_run.merge(extra.reset_index(), on=index)
    per_run = per_run[per_run.get("supported", 1) == 1]
    grouped = per_run.groupby(["hardware", "cfg.dtype", "label.shape"])
    frame = grouped.agg(
        tflops=("tflops", "median"),
        tflops_min=("tflops", "min"),
        tflops_max=("tflops", "max"),
        pct_of_peak=("pct_of_peak", "median"),
        peak_tflops=("peak_tflops", "max"),
        peak_method=("peak_method", "first"),
        intensity=("arithmetic_intensity", "first"),
        output_rel_error=("output_rel_error", "median"),
        peak_rss_growth_mb=("peak_rss_growth_bytes", lambda v: v.median() / 1e6),
        repeats=("id", "nunique"),
        noise=("noise", _worst_noise),
        invalid=("status", lambda s: int((s == "invalid").sum())),
        kernel=("kernel", "first"),
        m=("m", "first"),
        k=("k", "first"),
        n=("n", "first"),
    ).reset_index()
    frame = frame.rename(columns={"cfg.dtype": "dtype", "label.shape": "shape"})
    frame["flops"] = 2 * frame["m"] * frame["k"] * frame["n"]
    return flag_above_peak(frame)


def flag_above_peak(frame: pd.DataFrame) -> pd.DataFrame:
    """A measured fraction of peak above 1 means the peak is wrong (a CPU estimate at the nominal clock while the
    cores boost): it moves from `pct_of_peak` (not drawn) to `pct_above_peak`, which flags it."""
    above = frame["pct_of_peak"] > 100
    return frame.assign(
        pct_above_peak=frame["pct_of_peak"].where(above),
        pct_of_peak=frame["pct_of_peak"].mask(above),
    )


def unsupported_frame(unsupported: pd.DataFrame) -> pd.DataFrame:
    """The GEMM dtypes a machine could not run natively, with the reason, from the unsupported runs' rows."""
    runs = with_hardware(unsupported)
    reasons = runs.groupby(["hardware", "cfg.dtype"])["message"].first().reset_index()
    return reasons.rename(columns={"cfg.dtype": "dtype"})


def _dtype_order(present: pd.Series) -> list[str]:
    return [d for d in DTYPE_ORDER if d in set(present)]


def gemm_figure(gemm: pd.DataFrame, unsupported: pd.DataFrame) -> plt.Figure:
    """Throughput (top, log scale) and % of peak (bottom) per shape and dtype, one column per hardware."""
    frame = gemm_frame(gemm)
    hardware = sorted(frame["hardware"].unique())
    dtypes = _dtype_order(frame["dtype"])
    palette = dict(zip(dtypes, sns.color_palette("tab10", len(dtypes)), strict=True))
    figure, axes = plt.subplots(
        2, len(hardware), figsize=(5.5 + 3.2 * len(hardware), 7.5), squeeze=False, sharex="col", layout="constrained"
    )
    absent = unsupported_frame(unsupported)
    for column, name in enumerate(hardware):
        data = frame[frame["hardware"] == name]
        shapes = data.sort_values(["intensity", "flops"]).drop_duplicates("shape")["shape"].tolist()
        positions = {shape: i for i, shape in enumerate(shapes)}
        top, bottom = axes[0, column], axes[1, column]
        width = 0.8 / max(len(dtypes), 1)
        for j, dtype in enumerate(dtypes):
            rows = data[data["dtype"] == dtype]
            if rows.empty:
                continue
            x = rows["shape"].map(positions) + (j - (len(dtypes) - 1) / 2) * width
            errors = [rows["tflops"] - rows["tflops_min"], rows["tflops_max"] - rows["tflops"]]
            top.errorbar(x, rows["tflops"], yerr=errors, fmt="o", ms=5, capsize=2, color=palette[dtype], label=dtype)
            bottom.bar(x, rows["pct_of_peak"], width=width, color=palette[dtype])
            for position in x[rows["pct_above_peak"].notna()]:
                bottom.annotate("above peak: invalid", (position, 0), ha="center", va="bottom", fontsize=6, rotation=90)
            for position in x[rows["peak_method"] == "no units"]:
                bottom.annotate(f"no {dtype} units", (position, 0), ha="center", va="bottom", fontsize=6, rotation=90)
        top.set_yscale("log")
        top.set_ylabel("throughput (TFLOP/s; TOP/s for int8), log scale")
        top.set_title(name, fontsize=10)
        bottom.set_ylabel("% of the dtype's peak")
        bottom.set_xticks(range(len(shapes)), shapes, rotation=35, ha="right")
        bottom.set_xlabel("GEMM shape M x K x N (ordered by arithmetic intensity)")
        for axis in (top, bottom):
            axis.grid(axis="y", alpha=0.3, which="both")
        skipped = absent[absent["hardware"] == name]["dtype"].tolist()
        if skipped:
            top.set_title(f"{name}\nunsupported here (no native units): {', '.join(skipped)}", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, title="dtype", loc="outside right center")
    figure.suptitle("GEMM throughput by shape and dtype (median of fresh-process repeats, bars span them)")
    return figure


def _bandwidths(bandwidth: pd.DataFrame, gemm: pd.DataFrame, frame: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """Memory bandwidth per hardware: the datasheet's for a GPU, else the copy benchmark's calibration (its
    read-only stream where measured: the roof of GEMVs, which read their weights and write little)."""
    out: dict[str, tuple[float, str]] = {}
    copy = with_hardware(bandwidth)
    copy = copy[copy["metric"] == "bandwidth_gbs"]
    impls = copy.get("label.impl", pd.Series(None, index=copy.index, dtype=object))
    for impl, how in (("copy", "measured copy"), ("read", "measured read stream")):
        runs = copy[impls == impl]
        for name, value in runs.groupby("hardware")["value"].median().items():
            out[name] = (value, how)
    gemm = with_hardware(gemm)
    for name, value in gemm.groupby("hardware")["cfg.hardware.memory_bandwidth_gbs"].first().items():
        if value and value > 0:
            out[name] = (float(value), "datasheet")
    for name in frame["hardware"].unique():
        out.setdefault(name, (np.nan, "unknown (no successful bandwidth run)"))
    return out


def roofline_figure(gemm: pd.DataFrame, bandwidth: pd.DataFrame) -> plt.Figure:
    """Attainable TFLOP/s against arithmetic intensity per hardware: the compute roof of each dtype's peak,
    the memory roof of the bandwidth, and the measured GEMM points."""
    frame = gemm_frame(gemm)
    hardware = sorted(frame["hardware"].unique())
    bandwidths = _bandwidths(bandwidth, gemm, frame)
    dtypes = _dtype_order(frame["dtype"])
    palette = dict(zip(dtypes, sns.color_palette("tab10", len(dtypes)), strict=True))
    figure, axes = plt.subplots(
        1, len(hardware), figsize=(4.0 + 4.5 * len(hardware), 5.2), squeeze=False, layout="constrained"
    )
    for axis, name in zip(axes[0], hardware, strict=True):
        data = frame[frame["hardware"] == name]
        bandwidth, how = bandwidths[name]
        low = min(data["intensity"].min() / 2, 0.1)
        high = max(data["intensity"].max() * 4, 1e3)
        grid = np.geomspace(low, high, 200)
        peaks = data.groupby("dtype")["peak_tflops"].max().dropna()
        for dtype in dtypes:
            if dtype in peaks.index:
                memory_roof = grid * bandwidth / 1e3 if bandwidth == bandwidth else np.full_like(grid, np.inf)
                axis.plot(grid, np.minimum(peaks[dtype], memory_roof), color=palette[dtype], lw=1, alpha=0.6, ls="--")
        for peak, group in peaks.groupby(peaks.round(6)):
            names = [d for d in dtypes if d in group.index]
            label = "/".join([d for d in names if not d.startswith("w")] or names[:1])  # weight-only: bf16's
            axis.annotate(f"{label} peak {peak:.3g}", (grid[-1], peak), ha="right", va="bottom", fontsize=7)
        for dtype in dtypes:
            rows = data[data["dtype"] == dtype]
            axis.scatter(rows["intensity"], rows["tflops"], color=palette[dtype], s=28, label=dtype, zorder=3)
        if bandwidth == bandwidth:
            axis.plot(grid, grid * bandwidth / 1e3, color="black", lw=0.8, alpha=0.4)
        roof_text = f"memory roof: {bandwidth:.3g} GB/s, {how}" if bandwidth == bandwidth else f"memory roof: {how}"
        axis.text(0.98, 0.02, roof_text, transform=axis.transAxes, ha="right", va="bottom", fontsize=8)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("arithmetic intensity (FLOP per byte of minimum traffic)")
        axis.set_ylabel("attainable throughput (TFLOP/s)")
        axis.set_title(name, fontsize=10)
        axis.grid(alpha=0.3, which="both")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, title="dtype (dashed: its roof)", loc="outside right center")
    figure.suptitle("Roofline: measured GEMMs against compute peaks and memory bandwidth")
    return figure


def gemm_table(gemm: pd.DataFrame, unsupported: pd.DataFrame) -> pd.DataFrame:
    """Per hardware, dtype and shape: TFLOP/s (median, min, max over repeats), % of peak, the peak used,
    arithmetic intensity, output error against fp64, peak RSS growth, repeats, noise; unsupported dtypes last."""
    frame = gemm_frame(gemm)
    columns = [
        "hardware",
        "dtype",
        "shape",
        "tflops",
        "tflops_min",
        "tflops_max",
        "pct_of_peak",
        "pct_above_peak",
        "peak_tflops",
        "peak_method",
        "intensity",
        "output_rel_error",
        "peak_rss_growth_mb",
        "repeats",
        "noise",
        "invalid",
        "kernel",
    ]
    frame["order"] = frame["dtype"].map({d: i for i, d in enumerate(DTYPE_ORDER)})
    table = frame.sort_values(["hardware", "order", "intensity"])[columns]
    absent = unsupported_frame(unsupported).rename(columns={"message": "kernel"}).assign(shape="-")
    return pd.concat([table, absent], ignore_index=True).set_index(["hardware", "dtype", "shape"])


def qdq_table(qdq: pd.DataFrame) -> pd.DataFrame:
    """Per format and implementation: Melem/s, % of a copy's rate, speedup over torchao, peak memory in
    copies of the input, QSNR and agreement with torchao; medians over repeats."""
    runs = with_hardware(qdq)
    runs = runs[runs["label.impl"].notna()]
    index = ["hardware", "cfg.format.name", "label.impl", "id"]
    per_run = runs.pivot_table(index=index, columns="metric", values="value", aggfunc="first").reset_index()
    metrics = [
        m
        for m in (
            "elements_per_s",
            "pct_of_copy",
            "speedup_vs_torchao",
            "copies_of_input",
            "qsnr_db",
            "torchao_max_abs_diff",
            "torchao_mismatch_fraction",
        )
        if m in per_run
    ]
    table = per_run.groupby(index[:3])[metrics].median()
    table["elements_per_s"] = table["elements_per_s"] / 1e6
    table = table.rename(columns={"elements_per_s": "Melem_per_s"})
    table["repeats"] = per_run.groupby(index[:3])["id"].nunique()
    table.index = table.index.set_names(["hardware", "format", "impl"])
    return table


INFERENCE_METRICS = [
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "prefill_latency_p50_s",
    "token_latency_p50_s",
    "token_latency_p90_s",
    "token_latency_p99_s",
    "decode_pct_of_peak",
    "logits_rel_error",
    "token_agreement",
    "peak_rss_growth_bytes",
    "cold_start_s",
]


def inference_table(inference: pd.DataFrame) -> pd.DataFrame:
    """Per hardware, model, precision and batch: prefill and decode tokens/s, per-token latency p50/p90/p99
    (decode steps; the count says how many), % of peak in decode, and the accuracy against fp32 (relative
    error of the logits, fraction of greedy tokens equal); medians over repeats."""
    runs = with_hardware(inference)
    runs = runs[runs["metric"].isin(INFERENCE_METRICS)]
    index = ["hardware", "cfg.model.name", "cfg.dtype", "cfg.batch_size"]
    per_run = runs.pivot_table(index=[*index, "id"], columns="metric", values="value", aggfunc="first")
    table = per_run.groupby(level=index).median()
    table["repeats"] = per_run.groupby(level=index).size()
    counts = runs[runs["metric"] == "token_latency_p99_s"].groupby(index)["label.count"].median()
    table["latency_samples"] = counts
    table.index = table.index.set_names(["hardware", "model", "dtype", "batch"])
    return table[[c for c in [*INFERENCE_METRICS, "latency_samples", "repeats"] if c in table]]
