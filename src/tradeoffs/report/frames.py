"""Frames derived from a study's rows that both figures and claim criteria use: the machine each benchmark row
ran on, and the Monte-Carlo QSNR per crest-factor bin. They import no plotting, so the criteria
(tradeoffs.report.claims.criteria) read them without importing figure code."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradeoffs.numerics import qsnr_db

MIN_BLOCKS_PER_BIN = 64  # Monte-Carlo crest bins with fewer blocks are too noisy to show or judge


def hardware_column(rows: pd.DataFrame) -> pd.Series:
    """A readable name of the machine of each row: the GPU, or the CPU model with its thread count; rows of a
    reference set (tradeoffs.report.reference) say so."""
    cpu_model = rows.get("prov.cpu_model", pd.Series("CPU", index=rows.index)).fillna("CPU")
    threads = rows.get("prov.torch_threads", pd.Series(np.nan, index=rows.index)).fillna(0).astype(int)
    cpu = "CPU " + cpu_model.astype(str) + ", " + threads.astype(str) + " thr."
    gpu = rows.get("prov.gpu", pd.Series(None, index=rows.index))
    name = gpu.where(rows["cfg.hardware.device"] == "cuda", cpu)
    reference = rows.get("reference", pd.Series(None, index=rows.index, dtype=object))
    return name.where(reference.isna(), name + " (reference: " + reference.astype(str) + ")")


def crest_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Monte-Carlo QSNR per (format, crest bin) from the rows of the numerics study's runs, pooling the runs of
    each format: format, bin centre `crest`, blocks and QSNR (dB); bins with too few blocks left out."""
    runs = rows[rows["metric"].str.startswith("crest_bin_")]
    wide = runs.pivot_table(
        index=["id", "cfg.format.name", "label.crest"], columns="metric", values="value", aggfunc="first"
    ).reset_index()
    pooled = wide.groupby(["cfg.format.name", "label.crest"])[
        ["crest_bin_blocks", "crest_bin_signal", "crest_bin_noise"]
    ].sum()
    pooled = pooled[pooled["crest_bin_blocks"] >= MIN_BLOCKS_PER_BIN].reset_index()
    pooled["qsnr_db"] = qsnr_db(pooled["crest_bin_signal"], pooled["crest_bin_noise"])
    pooled["crest"] = pooled["label.crest"].astype(float) + 0.125  # bin centre
    return pooled.rename(columns={"cfg.format.name": "format"})[["format", "crest", "crest_bin_blocks", "qsnr_db"]]
