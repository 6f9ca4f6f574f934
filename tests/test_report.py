"""Report registries: every product resolves to a function and has a caption for snakemake --report."""

from __future__ import annotations

import pytest

from conftest import ROOT
from tradeoffs.config import load_suite
from tradeoffs.report import FIGURES, TABLES, _resolve


@pytest.mark.parametrize("registry,caption", [(FIGURES, "{}.rst"), (TABLES, "table_{}.rst")])
def test_products_resolve_and_have_captions(registry, caption):
    studies = set(load_suite("quick").experiments)  # every product is drawn by the default suite
    for name, product in registry.items():
        assert set(product.studies) | set(product.optional) <= studies, (name, product.studies)
        assert callable(_resolve(product.target))
        assert (ROOT / "workflow" / "report" / caption.format(name)).is_file(), name


def test_a_product_fails_naming_a_missing_study_or_metric():
    import pandas as pd

    from tradeoffs.errors import ConfigError
    from tradeoffs.report.common import select

    table = pd.DataFrame(
        {"id": ["a", "a"], "kind": ["numerics"] * 2, "status": ["ok"] * 2, "metric": ["qsnr_db", "bias"]}
    )
    assert len(select(table, "numerics", metrics=["qsnr_db"])) == 2
    with pytest.raises(ConfigError, match=r"no runs of study 'crossover'; its studies: numerics"):
        select(table, "crossover")
    with pytest.raises(ConfigError, match=r"study 'numerics' has no metric 'alignment'.*their metrics: bias, qsnr_db"):
        select(table, "numerics", metrics=["alignment"])
    assert select(table, "bandwidth", required=False).empty
