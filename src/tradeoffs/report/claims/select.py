"""Row selection of the claims: a read (study, metric, filter) becomes table rows through
tradeoffs.report.common.select_rows, the selection products read through too."""

from __future__ import annotations

import pandas as pd

from tradeoffs.report.common import select_rows, studies_of


def studies_present(results: pd.DataFrame) -> set[str]:
    """The studies with at least one run in the table (whatever its status)."""
    return set(studies_of(results).dropna()) if len(results) else set()


__all__ = ["select_rows", "studies_present"]
