"""Report registries: every product resolves to a function and has a caption for snakemake --report."""

from __future__ import annotations

import inspect

import pytest

from conftest import ROOT
from tradeoffs.pipeline.config import load_suite
from tradeoffs.report import FIGURES, TABLES, _resolve


@pytest.mark.parametrize("registry,caption", [(FIGURES, "{}.rst"), (TABLES, "table_{}.rst")])
def test_products_resolve_and_have_captions(registry, caption):
    studies = set(load_suite("quick").experiments)  # every product is drawn by the default suite
    for name, product in registry.items():
        assert set(product.studies) | set(product.optional) <= studies, (name, product.studies)
        assert callable(_resolve(product.target))
        assert (ROOT / "workflow" / "report" / caption.format(name)).is_file(), name


@pytest.mark.parametrize("registry", [FIGURES, TABLES])
def test_a_product_function_takes_exactly_its_reads(registry):
    """The registry hands a product its frames by read name; anything else the function takes has a default."""
    for name, product in registry.items():
        parameters = inspect.signature(_resolve(product.target)).parameters.values()
        assert [p.name for p in parameters if p.default is p.empty] == list(product.reads), name


def test_a_products_studies_are_its_reads():
    roofline = FIGURES["bench_roofline"]
    assert (roofline.studies, roofline.optional) == (("gemm",), ("bandwidth",))
    assert FIGURES["numerics_crest"].studies == ("crossover", "numerics")
    assert TABLES["bench_gemm"].studies == ("gemm",)  # two reads of one study


def test_a_product_fails_naming_a_missing_study_or_metric():
    import pandas as pd

    from tradeoffs.errors import ConfigError
    from tradeoffs.report.common import select
    from tradeoffs.report.reads import Rows

    table = pd.DataFrame(
        {"id": ["a", "a"], "kind": ["numerics"] * 2, "status": ["ok"] * 2, "metric": ["qsnr_db", "bias"]}
    )
    assert len(select(table, "numerics", metrics=["qsnr_db"])) == 2
    with pytest.raises(ConfigError, match=r"no runs of study 'crossover'; its studies: numerics"):
        select(table, "crossover")
    with pytest.raises(ConfigError, match=r"study 'numerics' has no metric 'alignment'.*their metrics: bias, qsnr_db"):
        select(table, "numerics", metrics=["alignment"])
    assert select(table, "bandwidth", required=False).empty
    assert Rows("numerics", metric=("bias",)).rows(table)["metric"].tolist() == ["bias"]
    with pytest.raises(ConfigError, match=r"study 'numerics' has no metric 'alignment'"):
        Rows("numerics", requires=("alignment",)).rows(table)
    with pytest.raises(ConfigError, match=r"no runs of study 'gemm'"):
        Rows("gemm").rows(table)
    assert Rows("gemm", optional=True).rows(table).empty
