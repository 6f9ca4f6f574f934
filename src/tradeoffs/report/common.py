"""Row selection shared by the report modules."""

from __future__ import annotations

import numpy as np
import pandas as pd


def study_rows(results: pd.DataFrame, study: str, statuses: tuple[str, ...] = ("ok",)) -> pd.DataFrame:
    """Rows of the runs of one study (cfg.study; runs planned before studies existed count as their kind)
    with the given statuses."""
    runs = results[results["status"].isin(statuses)]
    planned = runs.get("cfg.study", pd.Series(np.nan, index=runs.index)).replace("", np.nan)
    return runs[planned.fillna(runs["kind"]) == study]
