"""Report registries: every product resolves to a function and has a caption for snakemake --report."""

from __future__ import annotations

import pytest

from conftest import ROOT
from tradeoffs.config import EXPERIMENT_SCHEMAS
from tradeoffs.report import FIGURES, TABLES, _resolve


@pytest.mark.parametrize("registry,caption", [(FIGURES, "{}.rst"), (TABLES, "table_{}.rst")])
def test_products_resolve_and_have_captions(registry, caption):
    for name, (kind, target) in registry.items():
        assert kind in EXPERIMENT_SCHEMAS
        assert callable(_resolve(target))
        assert (ROOT / "workflow" / "report" / caption.format(name)).is_file(), name
