"""Grouping runs by their setting (a dict of labels per run), shared by the fits over settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tradeoffs.errors import ConfigError


def group_rows(settings: Sequence[Mapping[str, Any]] | None, count: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(setting, row indices) for each distinct setting, in first-seen order; one group of everything when
    `settings` is None."""
    if settings is None:
        return [({}, np.arange(count))]
    if len(settings) != count:
        raise ConfigError(f"settings: {len(settings)} settings for {count} runs")
    keys: dict[tuple, list[int]] = {}
    for row, setting in enumerate(settings):
        keys.setdefault(tuple(sorted(setting.items())), []).append(row)
    return [(dict(key), np.array(rows)) for key, rows in keys.items()]
