"""The data a figure draws, as a table: what `write_figure` saves beside each figure as <name>.csv, so that two
runs' figures can be compared value by value (`python -m tradeoffs compare`).

One row per plotted point, read back from the figure's artists in data coordinates: lines (`line`), marker
collections (`points`), line and polygon collections (`segments`, `area`; `part` numbers the segment or
polygon), rectangles such as bars and spans (`bar`: x, y, width, height), texts and annotations (`text`, at
their position; an annotation's x, y is the point it annotates), legend entries (`legend`, without a position:
the layout places them), and the tick labels an axis was given as data (categories, fixed labels: `xtick`,
`ytick`). Each axes starts with an `axes` row holding its title, axis labels and scales; texts on the figure
itself (its title, the failed runs noted under it) have axes -1 and no position.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["axes", "artist", "label", "part", "point", "x", "y", "width", "height", "text"]


def _label(artist: Any) -> str:
    """The artist's legend label; matplotlib's automatic names ('_child3', '_line0') are no data."""
    label = str(artist.get_label() or "")
    return "" if label.startswith("_") else label


def _rows(axes: int, artist: str, label: str, xy: Any, part: int = 0) -> list[dict[str, Any]]:
    points = np.ma.filled(np.ma.asarray(xy, dtype=float), np.nan).reshape(-1, 2)
    return [
        {"axes": axes, "artist": artist, "label": label, "part": part, "point": i, "x": x, "y": y}
        for i, (x, y) in enumerate(points.tolist())
    ]


def _collection_rows(axes: int, collection: Any) -> list[dict[str, Any]]:
    """A scatter's points, or every segment or polygon of a line or polygon collection, vertex by vertex."""
    from matplotlib.collections import LineCollection, PathCollection

    label = _label(collection)
    if isinstance(collection, PathCollection):
        return _rows(axes, "points", label, collection.get_offsets())
    if isinstance(collection, LineCollection):
        parts = collection.get_segments()
        return [row for i, segment in enumerate(parts) for row in _rows(axes, "segments", label, segment, i)]
    paths = collection.get_paths()
    return [row for i, path in enumerate(paths) for row in _rows(axes, "area", label, path.vertices, i)]


def _patch_rows(axes: int, patch: Any) -> list[dict[str, Any]]:
    from matplotlib.patches import Rectangle

    if isinstance(patch, Rectangle):
        x, y = patch.get_xy()
        row = {"axes": axes, "artist": "bar", "label": _label(patch), "part": 0, "point": 0, "x": x, "y": y}
        return [{**row, "width": patch.get_width(), "height": patch.get_height()}]
    vertices = patch.get_patch_transform().transform(patch.get_path().vertices)
    return _rows(axes, "area", _label(patch), vertices)


def _text_rows(axes: int, artist: str, texts: Any, placed: bool = True) -> list[dict[str, Any]]:
    """The non-empty texts, at their position (an annotation's: the point it annotates) where `placed`; a legend's
    and the figure's own texts are placed by the layout, so they have none."""
    rows = []
    for i, text in enumerate(texts):
        x, y = (getattr(text, "xy", None) or text.get_position()) if placed else (np.nan, np.nan)
        row = {"axes": axes, "artist": artist, "label": "", "part": 0, "point": i, "x": x, "y": y}
        rows.append({**row, "text": text.get_text()})
    return [row for row in rows if row["text"]]


def _tick_rows(axes: int, axis: Any, name: str) -> list[dict[str, Any]]:
    """The tick labels of an axis that were given as data (categorical or fixed), at their positions."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter

    formatter = axis.get_major_formatter()
    if not isinstance(formatter, (FixedFormatter, StrCategoryFormatter)):
        return []
    locations = list(axis.get_majorticklocs())
    labels = formatter.format_ticks(locations)
    return [
        {"axes": axes, "artist": name, "label": "", "part": 0, "point": i, "x": float(loc), "y": np.nan, "text": text}
        for i, (loc, text) in enumerate(zip(locations, labels, strict=True))
        if text
    ]


def _axes_rows(index: int, axes: Any) -> list[dict[str, Any]]:
    described = " | ".join(
        [axes.get_title(), axes.get_xlabel(), axes.get_ylabel(), f"{axes.get_xscale()}/{axes.get_yscale()}"]
    )
    rows: list[dict[str, Any]] = [
        {"axes": index, "artist": "axes", "label": "", "part": 0, "point": 0, "text": described}
    ]
    for line in axes.lines:
        rows += _rows(index, "line", _label(line), line.get_xydata())
    for collection in axes.collections:
        rows += _collection_rows(index, collection)
    for patch in axes.patches:
        rows += _patch_rows(index, patch)
    rows += _text_rows(index, "text", axes.texts)
    if (legend := axes.get_legend()) is not None:
        rows += _text_rows(index, "legend", legend.get_texts(), placed=False)
    rows += _tick_rows(index, axes.xaxis, "xtick") + _tick_rows(index, axes.yaxis, "ytick")
    return rows


def figure_data(figure: Any) -> pd.DataFrame:
    """The data `figure` draws, one row per plotted point or text (module docstring), in drawing order."""
    rows = [row for i, axes in enumerate(figure.axes) for row in _axes_rows(i, axes)]
    rows += _text_rows(-1, "text", figure.texts, placed=False)
    for legend in figure.legends:
        rows += _text_rows(-1, "legend", legend.get_texts(), placed=False)
    return pd.DataFrame(rows, columns=COLUMNS)
