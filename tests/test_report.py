"""Report registries: every product resolves to a function and has a caption for snakemake --report."""

from __future__ import annotations

import pytest

from conftest import ROOT
from tradeoffs.config import load_suite
from tradeoffs.report import FIGURES, TABLES, _resolve


@pytest.mark.parametrize("registry,caption", [(FIGURES, "{}.rst"), (TABLES, "table_{}.rst")])
def test_products_resolve_and_have_captions(registry, caption):
    studies = set(load_suite("quick").experiments)  # every product is drawn by the default suite
    for name, (study, target) in registry.items():
        assert study in studies, (name, study)
        assert callable(_resolve(target))
        assert (ROOT / "workflow" / "report" / caption.format(name)).is_file(), name
