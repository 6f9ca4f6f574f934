"""Figures and tables of the post-training quantization studies (the quant kind): weight-only perplexity against
bits per weight per method and scale granularity (study `gptq`), loss change against the injected outlier
magnitude per method (study `outliers`), the shoot-out table and the Pareto figure of loss change against
measured GEMM speed-up and against bits per weight (study `ptq`, with the `gemm` study's throughput)."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from tradeoffs.report.reads import SCORE_METRICS

METHOD_LABELS = {
    "rtn": "RTN",
    "gptq": "GPTQ",
    "smoothquant": "SmoothQuant",
    "rotation": "Hadamard rotation",
    "llm_int8": "LLM.int8()",
}
GRANULARITY_LABELS = {"format": "spec default", "tensor": "per tensor", "channel": "per channel"}
# The gemm study's dtype that computes a spec: by activation element, else (weight-only) by weight element.
ACTIVATION_KERNELS = {"int8": "int8", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"}
WEIGHT_ONLY_KERNELS = {"int8": "w8_fused", "int4": "w4_fused"}
SPEED_BASELINE = ("bf16", "fp32")  # the speed-up's denominator: the first of these the gemm study ran
SPEC_COLUMNS = ["cfg.method.spec.name", "cfg.method.spec.weight", "cfg.method.spec.activation"]
LINTHRESH = 1e-3  # nats: loss changes below this are drawn on the symlog axis's linear part


def runs(rows: pd.DataFrame, metrics: tuple[str, ...] = SCORE_METRICS) -> pd.DataFrame:
    """One row per ok run of a quant study's rows: its cfg.* columns, its configuration's label and each metric
    of `metrics` (plus the reference's perplexity and the operands' elements) as a column."""
    wanted = rows[rows["metric"].isin([*metrics, "reference_perplexity", "reference_loss", "reference_memory_bytes"])]
    values = wanted.pivot_table(index="id", columns="metric", values="value", aggfunc="mean")
    config = rows.drop_duplicates("id").set_index("id")[[c for c in rows.columns if c.startswith("cfg.")]]
    operands = rows[rows["metric"] == "bits_per_weight"].drop_duplicates("id").set_index("id")
    frame = config.join(values)
    for key in ("weight_element", "activation_element"):
        frame[key] = operands[f"label.{key}"].fillna("") if f"label.{key}" in operands else ""
    frame["label"] = [config_label(row) for _, row in frame.iterrows()]
    return frame


def _given(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def granularity_label(row: pd.Series) -> str:
    """How the weight's scales are laid out: the spec's default, per tensor/channel, or groups of G."""
    granularity = _given(row.get("cfg.method.spec.weight_granularity")) or "format"
    if granularity == "group":
        return f"groups of {int(row['cfg.method.spec.group_size'])}"
    return GRANULARITY_LABELS[granularity]


def config_label(row: pd.Series) -> str:
    """A run's configuration in words: method, spec, the overridden formats [weight | activation], the weight's
    scale layout when not the spec's own, and GPTQ weights under smoothing or rotation."""
    method = row["cfg.method.name"]
    if method == "llm_int8":
        return METHOD_LABELS[method]
    label = f"{METHOD_LABELS.get(method, method)} {row['cfg.method.spec.name']}"
    formats = [_given(row.get(key)) for key in SPEC_COLUMNS[1:]]
    if any(formats):
        label += f" [{formats[0] or 'default'} | {formats[1] or 'default'}]"
    if _given(row.get("cfg.method.spec.weight_granularity")) not in ("", "format"):
        label += f", {granularity_label(row)}"
    if kv_cache := _given(row.get("cfg.method.spec.kv_cache")):
        label += f", KV {kv_cache}"
    if method in ("smoothquant", "rotation") and _gptq_weights(row):
        label += " + GPTQ"
    return label


def _gptq_weights(row: pd.Series) -> bool:
    """Whether a smoothed or rotated run's weights were quantized with GPTQ: its method config holds GPTQ
    settings (tables written before the methods were registered units say so in `gptq_weights`, and carry GPTQ
    settings on every row)."""
    flag = row.get("cfg.method.gptq_weights")
    return bool(flag) if pd.notna(flag) else pd.notna(row.get("cfg.method.gptq.block_size"))


def _source(frame: pd.DataFrame) -> str:
    models = ", ".join(sorted(frame["cfg.source.model.name"].dropna().unique()))
    steps = ", ".join(str(int(s)) for s in sorted(frame["cfg.source.steps"].dropna().unique()))
    recipes = ", ".join(sorted(frame["cfg.source.recipe.name"].dropna().unique()))
    tokens = ", ".join(str(int(t)) for t in sorted(frame["cfg.eval_tokens"].unique()))
    return f"{models} ({recipes}, {steps} steps); {tokens} validation tokens"


def _symlog(axis) -> None:
    axis.set_yscale("symlog", linthresh=LINTHRESH)
    axis.axhline(0.0, color="0.3", linewidth=0.8)
    axis.grid(alpha=0.3, which="both")


def weight_only_frame(gptq: pd.DataFrame) -> pd.DataFrame:
    """The weight-only study's runs: method, spec, scale layout, bits per weight, perplexity, loss change, KL."""
    frame = runs(gptq).assign(layout=lambda f: [granularity_label(r) for _, r in f.iterrows()])
    frame["method"] = [METHOD_LABELS.get(m, m) for m in frame["cfg.method.name"]]
    frame = frame.rename(columns={"cfg.method.spec.name": "spec"})
    columns = ["method", "spec", "layout", "bits_per_weight", "perplexity", "reference_perplexity", "loss_change", "kl"]
    return frame[columns].sort_values(["method", "layout", "bits_per_weight"])


def weight_only_figure(gptq: pd.DataFrame) -> plt.Figure:
    """One panel per method: validation perplexity against bits per weight (scales included), a line per weight
    scale layout through the specs' bit widths; the full-precision perplexity dashed."""
    frame = weight_only_frame(gptq)
    rows = runs(gptq)
    methods = list(dict.fromkeys(frame["method"]))
    order = ["groups of 32", "groups of 64", "groups of 128", "per channel", "spec default", "per tensor"]
    layouts = sorted(frame["layout"].unique(), key=lambda s: order.index(s) if s in order else len(order))
    palette = dict(zip(layouts, sns.color_palette("colorblind", len(layouts)), strict=True))
    markers = dict(zip(layouts, "osD^v<>p*", strict=False))
    figure, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 4.2), sharey=True, squeeze=False)
    for axis, method in zip(axes[0], methods, strict=True):
        for layout in layouts:
            line = frame[(frame["method"] == method) & (frame["layout"] == layout)].sort_values("bits_per_weight")
            if line.empty:
                continue
            axis.plot(line["bits_per_weight"], line["perplexity"], marker=markers[layout], color=palette[layout],
                      label=layout)  # fmt: skip
        axis.axhline(frame["reference_perplexity"].mean(), color="0.2", linestyle="--", label="full precision (FP32)")
        axis.ticklabel_format(axis="y", style="plain", useOffset=False)
        axis.set_title(method)
        axis.set_xlabel("bits per weight (scales and zero points included)")
        axis.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("validation perplexity (per byte token)")
    for axis in axes[0]:
        axis.set_xticks([3, 4, 5, 6, 7, 8, 9])
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0), frameon=False)
    figure.suptitle(f"Weight-only PTQ: perplexity against bits per weight\n{_source(rows)}", fontsize=10)
    figure.tight_layout()
    return figure


def weight_only_table(gptq: pd.DataFrame) -> pd.DataFrame:
    """The weight-only runs indexed by method, spec and scale layout."""
    table = weight_only_frame(gptq).set_index(["method", "spec", "layout"])
    return table.rename(
        columns={
            "bits_per_weight": "bits per weight (incl. scales)",
            "perplexity": "perplexity",
            "reference_perplexity": "full-precision perplexity",
            "loss_change": "loss change (nats)",
            "kl": "KL to full precision (nats/token)",
        }
    )


def outliers_figure(outliers: pd.DataFrame) -> plt.Figure:
    """Loss change (quantized - full precision) against the injected outlier magnitude k, a line per method."""
    frame = runs(outliers).sort_values("cfg.outlier_scale")
    labels = list(dict.fromkeys(frame.sort_values(["cfg.method.name", "label"])["label"]))
    palette = dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True))
    markers = dict(zip(labels, "osD^v<>p*X", strict=False))
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for label in labels:
        line = frame[frame["label"] == label].groupby("cfg.outlier_scale")["loss_change"].mean()
        axis.plot(line.index, line.to_numpy(), marker=markers[label], color=palette[label], label=label)
    axis.set_xscale("log", base=2)
    scales = sorted(frame["cfg.outlier_scale"].unique())
    axis.set_xticks(scales, [f"{s:g}" for s in scales])
    _symlog(axis)
    axis.set_ylim(-LINTHRESH, max(frame["loss_change"].max() * 2.5, LINTHRESH))
    axis.set_xlabel("injected outlier magnitude k (x gain of the outlier channels; 1: none)")
    axis.set_ylabel(f"validation loss change (nats; symlog, linear below {LINTHRESH:g})")
    axis.legend(loc="upper left", fontsize=8, frameon=True)
    axis.set_title(
        f"W8A8 PTQ under injected activation outliers ({int(frame['cfg.outlier_channels'].max())} channels per norm)"
        f"\n{_source(frame)}",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def outliers_table(outliers: pd.DataFrame) -> pd.DataFrame:
    """Loss change per method (rows) and outlier magnitude k (columns)."""
    frame = runs(outliers)
    table = frame.pivot_table(index="label", columns="cfg.outlier_scale", values="loss_change", aggfunc="mean")
    table.columns = [f"loss change at k={k:g} (nats)" for k in table.columns]
    table.index.name = "method"
    return table


def _shootout_runs(ptq: pd.DataFrame) -> pd.DataFrame:
    frame = runs(ptq)
    return frame.assign(recovery=100 * np.exp(-frame["loss_change"]))


def shootout_table(ptq: pd.DataFrame) -> pd.DataFrame:
    """Every configuration of the shoot-out (rows: method and spec, outlier magnitude): loss, perplexity, loss
    change, KL and top-1 agreement with full precision, recovery (full-precision over quantized perplexity),
    bits per weight with scales, and the weights' memory against a 16-bit model."""
    frame = _shootout_runs(ptq)
    frame["memory (KiB)"] = frame["memory_bytes"] / 1024
    frame["memory vs 16-bit (%)"] = 100 * frame["memory_bytes"] / frame["reference_memory_bytes"]
    frame = frame.sort_values(["cfg.outlier_scale", "loss_change"])
    table = frame.set_index(["label", "cfg.outlier_scale"])[
        ["loss", "perplexity", "loss_change", "kl", "top1_agreement", "recovery", "bits_per_weight", "memory (KiB)",
         "memory vs 16-bit (%)"]
    ]  # fmt: skip
    table.index.names = ["configuration", "outlier k"]
    return table.rename(
        columns={
            "loss": "loss (nats)",
            "loss_change": "loss change (nats)",
            "kl": "KL to full precision (nats/token)",
            "top1_agreement": "top-1 agreement",
            "recovery": "recovery (% of full-precision perplexity)",
            "bits_per_weight": "bits per weight (incl. scales)",
        }
    )


def speedups(gemm: pd.DataFrame) -> tuple[dict[str, float], str]:
    """GEMM speed-up of each dtype the gemm study ran on this machine (not a reference set) over the 16-bit
    baseline, at the decode-like shape (the smallest M, then the largest K x N) both ran, medians over repeats,
    from the gemm study's rows; and a line saying what was measured."""
    if "reference" in gemm:
        gemm = gemm[gemm["reference"].isna()]
    gemm = gemm[gemm["metric"] == "tflops"]
    if gemm.empty:
        return {}, "no gemm study in this run: no measured speed-up"
    baseline = next((d for d in SPEED_BASELINE if d in set(gemm["cfg.dtype"])), None)
    if baseline is None:
        return {}, f"the gemm study ran none of {', '.join(SPEED_BASELINE)}: no speed-up baseline"
    median = gemm.groupby(["cfg.dtype", "label.m", "label.k", "label.n"])["value"].median()
    base = median.loc[baseline]
    result, shapes = {}, set()
    for dtype in median.index.get_level_values(0).unique():
        shared = median.loc[dtype].index.intersection(base.index)
        if shared.empty:
            continue
        m, k, n = min(shared, key=lambda s: (s[0], -s[1] * s[2]))
        result[dtype] = float(median.loc[(dtype, m, k, n)] / base.loc[(m, k, n)])
        shapes.add(f"{int(m)}x{int(k)}x{int(n)}")
    hardware = ", ".join(sorted(gemm["cfg.hardware.name"].dropna().unique()))
    return result, f"GEMM speed-up over {baseline} on {hardware} at M x K x N = {', '.join(sorted(shapes))}"


def kernel_dtype(row: pd.Series) -> str | None:
    """The gemm study's dtype that runs a configuration: its activations' element, or for weight-only specs its
    weights' (INT8/INT4 weights with 16-bit activations); None when no measured kernel computes it."""
    if row["activation_element"]:
        return ACTIVATION_KERNELS.get(row["activation_element"])
    return WEIGHT_ONLY_KERNELS.get(row["weight_element"])


def _front(points: pd.DataFrame, x: str, y: str, better_x_high: bool) -> pd.DataFrame:
    """The Pareto front: points no other point beats in both x and y (lower y; higher or lower x)."""
    ordered = points.sort_values(x, ascending=not better_x_high)
    best, front = np.inf, []
    for _, point in ordered.iterrows():
        if point[y] < best:
            best = point[y]
            front.append(point)
    return pd.DataFrame(front)


def pareto_figure(ptq: pd.DataFrame, gemm: pd.DataFrame) -> plt.Figure:
    """Loss change of the shoot-out's configurations (no injected outliers) against the measured GEMM speed-up of
    the dtype that would compute them (left) and against bits per weight (right), Pareto fronts dotted; each
    point is numbered, the legend names its configuration, colour and marker give the method."""
    frame = _shootout_runs(ptq)
    frame = frame[frame["cfg.outlier_scale"] == frame["cfg.outlier_scale"].min()]
    speed, measured = speedups(gemm)
    frame = frame.assign(kernel=[kernel_dtype(r) for _, r in frame.iterrows()])
    frame["speedup"] = frame["kernel"].map(speed)
    frame = frame.sort_values(["bits_per_weight", "loss_change"]).reset_index(drop=True)
    frame["number"] = frame.index + 1
    methods = [*METHOD_LABELS, *sorted(set(frame["cfg.method.name"]) - set(METHOD_LABELS))]
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    markers = dict(zip(methods, itertools.cycle("osD^PXv<>"), strict=False))
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5.0), sharey=True)
    for axis, x, better_high in ((left, "speedup", True), (right, "bits_per_weight", False)):
        points = frame.dropna(subset=[x])
        for _, point in points.iterrows():
            method = point["cfg.method.name"]
            axis.scatter(
                point[x],
                point["loss_change"],
                s=60,
                color=palette[method],
                marker=markers[method],
                label=f"{point['number']}: {point['label']}",
                zorder=3,
                edgecolor="0.2",
                linewidth=0.5,
            )
            axis.annotate(str(point["number"]), (point[x], point["loss_change"]), fontsize=7, xytext=(4, 3),
                          textcoords="offset points")  # fmt: skip
        if len(points) > 1:
            front = _front(points, x, "loss_change", better_high)
            axis.plot(front[x], front["loss_change"], color="0.4", linestyle=":", label="Pareto front")
        _symlog(axis)
    left.set_ylim(-LINTHRESH, max(frame["loss_change"].max() * 2.5, LINTHRESH))
    left.axvline(1.0, color="0.3", linewidth=0.8)
    left.set_xlabel("measured GEMM speed-up of the matching dtype over the baseline above (x)")
    right.set_xlabel("bits per weight (scales and zero points included)")
    left.set_ylabel(f"validation loss change (nats; symlog, linear below {LINTHRESH:g})")
    left.set_title(measured, fontsize=8)
    right.set_title("all configurations", fontsize=8)
    handles, names = right.get_legend_handles_labels()
    figure.legend(handles, names, loc="upper center", ncol=3, fontsize=7.5, bbox_to_anchor=(0.5, 0.0), frameon=False)
    missing = frame[frame["speedup"].isna()]["number"]
    if len(missing):
        note = "no measured kernel on this machine (right panel only): " + ", ".join(map(str, missing))
        figure.text(0.01, 0.005, note, fontsize=7, ha="left", va="bottom")
    figure.suptitle(f"PTQ shoot-out: accuracy against speed and size\n{_source(frame)}", fontsize=10)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    return figure


# ------------------------------------------------------------------ weight formats (studies fp6_weights, fp4_weights)
FORMAT_LABELS = {
    "fp6_e3m2": "FP6 E3M2",
    "fp6_e2m3": "FP6 E2M3",
    "int6": "INT6",
    "int4_asym": "INT4 asym.",
    "fp4_e2m1": "FP4 E2M1",
    "fp4_e3m0": "FP4 E3M0",
    "int4": "INT4",
    "fp8_e4m3": "FP8 E4M3",
    "int8": "INT8",
}
FORMAT_COLUMNS = {
    "loss_change": "loss change (nats)",
    "kl": "KL to full precision (nats/token)",
    "top1_agreement": "top-1 agreement",
    "bits_per_weight": "bits per weight (incl. scales)",
}


def weight_format_label(row: pd.Series) -> str:
    """A run's weight format in words: `searched FP4` for a format search, else the format's name."""
    weight = _given(row.get("cfg.method.spec.weight"))
    bits = {"W4A16": 4, "W4A8": 4, "W6A16": 6, "W8A16": 8}.get(row["cfg.method.spec.name"], "")
    if row["cfg.method.name"] == "search":
        objective = _given(row.get("cfg.method.search.objective"))
        per = _given(row.get("cfg.method.search.element_per"))
        detail = "" if (objective, per) == ("weight", "layer") else f" ({objective} MSE, split per {per})"
        return f"searched FP{bits}{detail}"
    return FORMAT_LABELS.get(weight, weight or f"{row['cfg.method.spec.name']} default")


def _search_choices(rows: pd.DataFrame) -> pd.DataFrame:
    """Per searched run: the share of weights per chosen element (`e2m1 100%`) and the mean clipping ratio."""
    shares = rows[rows["metric"] == "search_element_share"]
    ratios = rows[rows["metric"] == "search_clip_ratio"].groupby("id")["value"].mean()
    if shares.empty:
        return pd.DataFrame(columns=["chosen elements", "mean clip ratio"])
    chosen = shares[shares["value"] > 0].sort_values("value", ascending=False).groupby("id", sort=False)
    text = chosen.apply(
        lambda g: ", ".join(f"{e} {100 * v:.0f}%" for e, v in zip(g["label.element"], g["value"], strict=True))
    )
    return pd.DataFrame({"chosen elements": text, "mean clip ratio": ratios})


def weight_formats_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The runs of a weight-format study's rows (fp6_weights or fp4_weights): spec, format, scale layout, method,
    scores against full precision, bits per weight and, for searched weights, what the search chose."""
    frame = runs(rows)
    frame["format"] = [weight_format_label(r) for _, r in frame.iterrows()]
    frame["layout"] = [granularity_label(r) for _, r in frame.iterrows()]
    frame["method"] = frame["cfg.method.name"].map({**METHOD_LABELS, "search": "RTN, searched"})
    frame["spec"] = frame["cfg.method.spec.name"]
    return frame.join(_search_choices(rows))


def fp6_weights_table(fp6_weights: pd.DataFrame) -> pd.DataFrame:
    """W6A16 FP6 and INT6 per channel against INT4 per group and per channel, RTN and GPTQ: loss change, KL, top-1
    agreement with full precision and bits per weight."""
    frame = weight_formats_frame(fp6_weights).sort_values(["method", "bits_per_weight", "loss_change"])
    table = frame.set_index(["method", "spec", "format", "layout"])[list(FORMAT_COLUMNS)]
    return table.rename(columns=FORMAT_COLUMNS)


def fp4_weights_table(fp4_weights: pd.DataFrame) -> pd.DataFrame:
    """4-bit FP (E2M1, E3M0, searched) against INT4 and 8-bit FP8 against INT8 weights, per scale layout, weight-only
    and W4A8: loss change, KL, agreement, bits per weight, and the searched runs' chosen elements and clip ratio."""
    frame = weight_formats_frame(fp4_weights).sort_values(["spec", "layout", "loss_change"])
    table = frame.set_index(["spec", "layout", "format"])[[*FORMAT_COLUMNS, "chosen elements", "mean clip ratio"]]
    return table.rename(columns=FORMAT_COLUMNS)


HUE_ORDER = ["RTN", "GPTQ", "per channel", "groups of 32", "groups of 64", "groups of 128"]


def _format_order(label: str) -> tuple[int, str]:
    """Floating-point formats first (by name), searched ones next, integers last, as FORMAT_LABELS lists them."""
    names = [*FORMAT_LABELS.values()]
    base = label.split(",")[0]
    if base.startswith("searched"):
        return (names.index("INT4") - 1 if "FP4" in base else len(names), label)
    return (names.index(base) if base in names else len(names), label)


def _format_bars(axis, frame: pd.DataFrame, x_order: list[str], hue: str, hue_order: list[str]) -> None:
    """Loss change per format (x) with one bar per `hue` value, on a symlog axis."""
    palette = dict(zip(hue_order, sns.color_palette("colorblind", len(hue_order)), strict=True))
    width = 0.8 / len(hue_order)
    for j, value in enumerate(hue_order):
        part = frame[frame[hue] == value].groupby("format")["loss_change"].mean()
        xs = [i + (j - (len(hue_order) - 1) / 2) * width for i, name in enumerate(x_order) if name in part.index]
        ys = [part[name] for name in x_order if name in part.index]
        axis.bar(xs, ys, width=width * 0.95, color=palette[value], label=value, edgecolor="0.2", linewidth=0.4)
    axis.set_xticks(range(len(x_order)), x_order, rotation=25, ha="right")
    _symlog(axis)
    axis.legend(fontsize=7.5, loc="upper left", frameon=True)


def weight_formats_figure(fp6_weights: pd.DataFrame, fp4_weights: pd.DataFrame) -> plt.Figure:
    """Validation loss change against full precision per weight format: FP6 against INT6 and INT4 (RTN and GPTQ;
    study fp6_weights), then 4-bit FP (E2M1, E3M0, searched) against INT4 weight-only and W4A8, and FP8 against
    INT8 (per channel and groups of 32; study fp4_weights)."""
    fp6 = weight_formats_frame(fp6_weights)
    fp6["format"] = fp6["format"] + ", " + fp6["layout"]
    fp4 = weight_formats_frame(fp4_weights)
    panels = [("W6A16 vs W4A16 (fp6_weights)", fp6, "method")]
    panels += [(f"{spec} (fp4_weights)", fp4[fp4["spec"] == spec], "layout") for spec in ("W4A16", "W4A8", "W8A16")]
    panels = [(title, frame, hue) for title, frame, hue in panels if not frame.empty]
    widths = [max(frame["format"].nunique(), 2) for _, frame, _ in panels]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.4 + 1.05 * sum(widths), 5.2), sharey=True,
                                gridspec_kw={"width_ratios": widths}, squeeze=False)  # fmt: skip
    top = max(fp6["loss_change"].max(), fp4["loss_change"].max())
    for axis, (title, frame, hue) in zip(axes[0], panels, strict=True):
        order = sorted(frame["format"].unique(), key=_format_order)
        hues = sorted(frame[hue].unique(), key=lambda h: HUE_ORDER.index(h) if h in HUE_ORDER else len(HUE_ORDER))
        _format_bars(axis, frame, order, hue, hues)
        axis.set_title(title, fontsize=9)
        axis.set_ylim(-LINTHRESH, max(top * 3, LINTHRESH))
    axes[0][0].set_ylabel(f"validation loss change (nats; symlog, linear below {LINTHRESH:g})")
    figure.suptitle(f"Weight formats: loss change against full precision\n{_source(fp4 if not fp4.empty else fp6)}",
                    fontsize=10)  # fmt: skip
    figure.tight_layout()
    return figure
