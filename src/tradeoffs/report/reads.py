"""What a report product reads: named `Rows` of the tidy table, declared in the registry
(tradeoffs.report.FIGURES, TABLES) and handed to the product's function by name. A product's studies are those
of its reads, stated nowhere else; its function never sees the whole table.

Rows select through tradeoffs.report.common.select_rows, as the claims' reads do
(tradeoffs.report.claims.spec.Read). This module imports no pandas, so the Snakefile reads the registry cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# The metrics every run of a study must have for the products that tabulate them: a quantized model's scores, and
# a scaling strategy's counts and step time.
SCORE_METRICS = ("loss", "perplexity", "loss_change", "kl", "top1_agreement", "bits_per_weight", "memory_bytes")
STRATEGY_METRICS = ("flops", "activations", "parameters", "flops_factor", "time_median_s")


@dataclass(frozen=True)
class Rows:
    """The rows of the runs of `study` with one of `statuses`, limited to the rows of `metric` when given. Its
    runs must have every metric of `requires` (else ReportError, naming what they have). The study must have run
    (ReportError otherwise) unless `optional`: then it is drawn when present and its rows may be empty."""

    study: str
    statuses: tuple[str, ...] = ("ok",)
    metric: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    optional: bool = False

    def rows(self, results: pd.DataFrame) -> pd.DataFrame:
        """These rows of the tidy table `results`."""
        from tradeoffs.report.common import select_rows

        return select_rows(
            results, self.study, self.metric, None, self.statuses, requires=self.requires, required=not self.optional
        )
