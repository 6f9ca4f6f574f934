"""Figure and table of the nondeterminism study: greedy agreement with the reference reduction order against
the generated position, per precision and perturbation, and the first-divergence statistics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

# Legend text of each precision (tradeoffs.nondeterminism.PRECISIONS).
PRECISION_LABELS = {
    "fp64": "FP64",
    "fp32": "FP32",
    "layercast": "LayerCast (BF16 weights, FP32 compute)",
    "fp16": "FP16",
    "bf16": "BF16",
}
PER_PROMPT = [
    "first_divergence_position",
    "max_logit_difference",
    "min_reference_margin",
    "logit_difference_at_divergence",
    "reference_margin_at_divergence",
]


def _runs(nondeterminism: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The study's rows of `metrics`, columns renamed."""
    rows = nondeterminism[nondeterminism["metric"].isin(metrics)]
    return rows.rename(columns={"label.precision": "precision", "label.perturbation": "perturbation"})


def _precisions(frame: pd.DataFrame) -> list[str]:
    """The precisions in the order the runs list them (their config's order)."""
    return list(dict.fromkeys(frame["precision"]))


def _perturbations(frame: pd.DataFrame) -> list[str]:
    """The perturbations in the order the runs list them (their config's order)."""
    return list(dict.fromkeys(frame["perturbation"]))


def _source(frame: pd.DataFrame) -> str:
    models = ", ".join(sorted(frame["cfg.source.model.name"].dropna().unique()))
    return f"{models} trained in {', '.join(sorted(frame['cfg.source.recipe.name'].dropna().unique()))}"


def agreement_frame(nondeterminism: pd.DataFrame) -> pd.DataFrame:
    """Share of prompts identical to the reference through each position, pooled over a precision's runs (each
    run is one seeded set of prompts of the same size): precision, perturbation, position, agreement, runs."""
    rows = _runs(nondeterminism, ["agreement_at_position"]).assign(position=lambda f: f["label.position"].astype(int))
    grouped = rows.groupby(["precision", "perturbation", "position"])
    return grouped.agg(agreement=("value", "mean"), runs=("id", "nunique")).reset_index()


def _prompt_summary(nondeterminism: pd.DataFrame) -> pd.DataFrame:
    """Per precision and perturbation: prompts decoded, prompts identical to the end, largest |logit change|."""
    prompts = _runs(nondeterminism, ["first_divergence_position", "max_logit_difference"])
    grouped = prompts.pivot_table(
        index=["precision", "perturbation", "id", "label.prompt"], columns="metric", values="value", dropna=False
    ).groupby(level=["precision", "perturbation"])
    return pd.DataFrame(
        {
            "prompts": grouped.size(),
            "identical": grouped["first_divergence_position"].apply(lambda p: int(p.isna().sum())),
            "max_change": grouped["max_logit_difference"].max(),
        }
    )


def agreement_figure(nondeterminism: pd.DataFrame) -> plt.Figure:
    """One panel per perturbation: the share of prompts whose greedy tokens still equal the reference order's
    against the generated position, one line per precision; each panel lists, per precision, the prompts
    identical to the end and the largest logit change (curves that coincide stay readable)."""
    rows = _runs(nondeterminism, ["agreement_at_position"])
    agreement, summary = agreement_frame(nondeterminism), _prompt_summary(nondeterminism)
    precisions, perturbations = _precisions(rows), _perturbations(rows)
    colours = dict(zip(PRECISION_LABELS, sns.color_palette("colorblind", len(PRECISION_LABELS)), strict=True))
    styles = dict(zip(PRECISION_LABELS, ["-.", "-", ":", "--", (0, (5, 1))], strict=True))  # the same in every run
    columns = min(4, len(perturbations))
    grid_rows = -(-len(perturbations) // columns)
    figure, axes = plt.subplots(grid_rows, columns, figsize=(3.6 * columns, 3.0 * grid_rows), sharex=True, sharey=True)
    axes = np.atleast_1d(axes).ravel()
    for axis, perturbation in zip(axes, perturbations, strict=False):
        lines = ["identical to end, max |Δlogit|"]
        for rank, precision in enumerate(precisions):
            line = agreement[(agreement["precision"] == precision) & (agreement["perturbation"] == perturbation)]
            axis.plot(
                line["position"],
                line["agreement"],
                color=colours[precision],
                linestyle=styles[precision],
                linewidth=3.2 - 0.6 * rank,  # coinciding curves stay visible as nested stripes
                label=PRECISION_LABELS[precision],
            )
            if (precision, perturbation) in summary.index:
                row = summary.loc[(precision, perturbation)]
                name = PRECISION_LABELS[precision].split(" ")[0]
                lines.append(f"{name}: {int(row['identical'])}/{int(row['prompts'])}, {row['max_change']:.1g}")
        axis.text(
            0.03, 0.04, "\n".join(lines), transform=axis.transAxes, fontsize=7, va="bottom",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"},
        )  # fmt: skip
        axis.set_title(perturbation, fontsize=10)
        axis.set_ylim(-0.03, 1.05)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in axes[len(perturbations) :]:
        axis.set_visible(False)
    for axis in axes[-columns:]:
        axis.set_xlabel("generated token position (0: first new token)")
    for axis in axes[::columns]:
        axis.set_ylabel("prompts identical so far (share)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(precisions), bbox_to_anchor=(0.5, 0.0), frameon=False)
    sets = int(agreement["runs"].max())
    size = f"{int(rows['cfg.prompts'].max())} prompts{f' x {sets} prompt sets' if sets > 1 else ''}"
    figure.suptitle(
        f"Greedy agreement with the reference reduction order ({rows['cfg.reference'].iloc[0]}), per precision\n"
        f"{_source(rows)}; {size} x {int(rows['cfg.new_tokens'].max())} new tokens",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def divergence_table(nondeterminism: pd.DataFrame) -> pd.DataFrame:
    """Per precision and perturbation: prompts, how many diverged, the shares identical in tokens and in logits,
    the first differing position, and the logit change and reference margin there and overall."""
    shares = _runs(nondeterminism, ["identical_fraction", "bitwise_identical_fraction"])
    shares = shares.pivot_table(index=["precision", "perturbation"], columns="metric", values="value", aggfunc="mean")
    prompts = _runs(nondeterminism, PER_PROMPT).pivot_table(
        index=["precision", "perturbation", "id", "label.prompt"], columns="metric", values="value", aggfunc="first"
    )
    for metric in PER_PROMPT:  # the at-divergence rows exist only where a prompt diverged
        if metric not in prompts:
            prompts[metric] = np.nan
    grouped = prompts.groupby(level=["precision", "perturbation"])
    table = pd.DataFrame(
        {
            "runs": grouped.apply(lambda f: f.index.get_level_values("id").nunique()),
            "prompts": grouped.size(),
            "diverged prompts": grouped["first_divergence_position"].count(),
            "identical to the end (share)": shares["identical_fraction"],
            "bitwise identical logits (share)": shares["bitwise_identical_fraction"],
            "first divergence, mean (token)": grouped["first_divergence_position"].mean(),
            "first divergence, earliest (token)": grouped["first_divergence_position"].min(),
            "|Δlogit| at divergence, mean (logit)": grouped["logit_difference_at_divergence"].mean(),
            "reference top-2 margin at divergence, mean (logit)": grouped["reference_margin_at_divergence"].mean(),
            "max |Δlogit| (logit)": grouped["max_logit_difference"].max(),
            "smallest reference top-2 margin (logit)": grouped["min_reference_margin"].min(),
        }
    )
    listed = _runs(nondeterminism, ["identical_fraction"])
    order = pd.MultiIndex.from_product([_precisions(listed), _perturbations(listed)], names=table.index.names)
    return table.reindex([key for key in order if key in table.index])
