"""Two runs' outputs compared value by value, timings apart (`python -m tradeoffs compare RUN_A RUN_B`): the check
that a change of code or environment changed no result.

A run is a project directory after `snakemake`: results/results.parquet, reports/figures, reports/tables and its
reference sets reports/reference/*.parquet. Three things are compared, and any difference fails the comparison:

- results: every metric row of every run that ended `ok` in both, matched by the run's name without its config
  hash (`kind/study_axisvalues`, so a schema change that renames ids still matches), the metric and its labels;
  value and unit must be equal. Runs or rows in one table only, and runs whose status changed, are differences.
  Timing rows are left out: a metric of the claims' lists of timings and measured memory (peak RSS and the like,
  tradeoffs.report.claims.stability.VARYING_METRICS) or a row carrying the timing engine's noise flag
  (`label.noise`, tradeoffs.bench.timing), and any metric named with `--ignore`. Provenance, config, message and
  run-time columns are not compared.
- claims: the verdict of every part that reads no timing (tradeoffs.report.claims.against); parts that read a
  timing and differ are listed, not failed.
- figures and tables: the data each figure plots (reports/figures/<name>.csv, tradeoffs.report.figure_data) and
  each table (reports/tables/<name>.csv), cell by cell with tolerance 0, run ids compared without their hash. A
  cell is a timing, and left out, when it changes as this code makes the product again from the run's own table
  with every timing row changed (values scaled, noise flags rotated). claims.csv is the claims, compared above.
  A run made before figures saved their data has its figures' data made again from its table by this code (said
  in the output).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tradeoffs.errors import ConfigError
from tradeoffs.report.claims.stability import VARYING_METRICS

HASHED_ID = re.compile(r"\b([a-z][a-z0-9_]*/[A-Za-z0-9.+_-]+?)-[0-9a-f]{8}\b")
SHOWN = 8  # differences listed per section or product before "and N more"
NOISE_ROTATION = {"ok": "warn", "warn": "suspect", "suspect": "ok"}
VALIDITY_SWAP = {"ok": "invalid", "invalid": "ok"}
PRODUCT_DIRS = {"figure": ("reports", "figures"), "table": ("reports", "tables")}
CLAIMS_TABLE = "claims"


def without_hash(text: str) -> str:
    """`text` with every run id in it (`kind/name-1a2b3c4d`) written without its config hash."""
    return HASHED_ID.sub(r"\1", text)


@dataclass(frozen=True)
class Run:
    """A project directory whose outputs are compared: its tidy table, report products and reference sets."""

    root: Path

    @property
    def table(self) -> Path:
        return self.root / "results" / "results.parquet"

    def products(self, kind: str) -> Path:
        """The directory of the run's figures or tables (`kind`)."""
        return self.root.joinpath(*PRODUCT_DIRS[kind])

    @property
    def reference(self) -> tuple[Path, ...]:
        return tuple(sorted((self.root / "reports" / "reference").glob("*.parquet")))


def open_run(path: Path) -> Run:
    """The run at `path`, a project directory holding results/results.parquet (checked to be a tidy table)."""
    from tradeoffs.results import check_table_file

    if not path.is_dir():
        raise ConfigError(
            f"compare: {path} is not a directory; give a project directory after a run (results/, reports/)"
        )
    run = Run(path)
    check_table_file(run.table)
    return run


@dataclass(frozen=True)
class Section:
    """One part of a comparison: what was compared, every difference found, and what was left out and why."""

    title: str
    compared: str
    differences: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def lines(self, shown: int | None = SHOWN) -> list[str]:
        """The section as printed: a headline, the first `shown` differences (None: all), what was left out, then
        notes."""
        head = f"{self.title}: {self.compared}; {len(self.differences)} difference(s)"
        listed = [f"  {d}" for d in self.differences[:shown]]
        if shown is not None and len(self.differences) > shown:
            listed.append(f"  ... and {len(self.differences) - shown} more")
        return [head, *listed, *(f"  not compared: {n}" for n in self.left_out), *(f"  note: {n}" for n in self.notes)]


@dataclass(frozen=True)
class Comparison:
    """The comparison of two runs, section by section."""

    first: Path
    second: Path
    sections: tuple[Section, ...]

    @property
    def differs(self) -> bool:
        return any(section.differences for section in self.sections)

    def text(self, shown: int | None = SHOWN) -> str:
        """The printed report: each section, then the verdict line."""
        lines = [line for section in self.sections for line in section.lines(shown)]
        count = sum(len(section.differences) for section in self.sections)
        verdict = f"{count} difference(s)" if count else "no difference in any non-timing value"
        return "\n".join([*lines, f"{self.first} vs {self.second}: {verdict}"])


# ----------------------------------------------------------------------------------------------- timings
def timing_rows(results: pd.DataFrame, ignore: Iterable[str] = ()) -> pd.Series:
    """Which rows of a tidy table hold a timing (or measured memory): a metric of VARYING_METRICS or of `ignore`,
    or a row the timing engine flagged with its noise level."""
    timing = results["metric"].isin(VARYING_METRICS | set(ignore))
    if "label.noise" in results:
        noise = results["label.noise"]
        timing |= noise.notna() & (noise.astype(object).astype(str) != "")
    return timing.fillna(False).astype(bool)


def with_other_timings(results: pd.DataFrame, ignore: Iterable[str] = ()) -> pd.DataFrame:
    """`results` with every timing row changed: its value scaled by a factor that differs from row to row (a zero
    made non-zero), its noise flag rotated; every run's wall_s scaled, and each timed benchmark's status swapped
    between ok and invalid."""
    changed = results.copy()
    timing = timing_rows(results, ignore).to_numpy()
    factors = np.random.default_rng(0).uniform(1.5, 3.0, len(results))
    values = changed["value"].to_numpy(dtype=float, copy=True)
    values[timing] = np.where(values[timing] == 0, factors[timing] - 1, values[timing] * factors[timing])
    changed["value"] = values
    if "label.noise" in changed:
        noise = changed["label.noise"].astype(object)
        changed["label.noise"] = noise.where(~timing, noise.map(lambda flag: NOISE_ROTATION.get(flag, flag)))
    if "wall_s" in changed:
        changed["wall_s"] = pd.to_numeric(changed["wall_s"], errors="coerce") * factors
    timed = changed["id"].astype(str).map(run_name).isin(timed_runs(results))
    swapped = changed["status"].map(lambda status: VALIDITY_SWAP.get(status, status))
    changed["status"] = changed["status"].where(~timed, swapped)
    return changed


# ----------------------------------------------------------------------------------------------- results
def run_name(run_id: str) -> str:
    """The run's id without its config hash: `kind/study_axisvalues`."""
    return re.sub(r"-[0-9a-f]{8}$", "", run_id)


def _text(value: object) -> str:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return without_hash(str(value))
    return repr(float(value))


def _labels(results: pd.DataFrame) -> pd.Series:
    """Each row's labels as one text, `name=value` sorted by name, run ids without their hash."""
    columns = sorted(c for c in results if c.startswith("label."))
    if not columns:
        return pd.Series("", index=results.index, dtype=object)
    stacked = results[columns].astype(object).stack(future_stack=True).dropna()
    stacked = stacked[stacked.map(lambda v: v != "")]
    parts = [f"{column.removeprefix('label.')}={_text(v)}" for (_, column), v in stacked.items()]
    joined = pd.Series(parts, index=stacked.index.get_level_values(0), dtype=object).groupby(level=0).agg(", ".join)
    return joined.reindex(results.index, fill_value="")


def _keyed(results: pd.DataFrame) -> pd.DataFrame:
    """The metric rows with a key: run name, metric, labels, and the occurrence of that triple."""
    rows = results[results["metric"].notna()]
    keyed = pd.DataFrame(
        {
            "run": rows["id"].astype(str).map(run_name),
            "metric": rows["metric"].astype(str),
            "labels": _labels(rows),
            "value": rows["value"].to_numpy(dtype=float),
            "unit": rows["unit"].astype(object).fillna("").astype(str),
        },
        index=rows.index,
    )
    keyed["n"] = keyed.groupby(["run", "metric", "labels"]).cumcount()
    return keyed.set_index(["run", "metric", "labels", "n"]).sort_index()


def _row_name(key: tuple) -> str:
    run, metric, labels, n = key
    return f"{run} {metric}" + (f" [{labels}]" if labels else "") + (f" #{n + 1}" if n else "")


def _runs(results: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """Each run's status by name, and the names that more than one id shares."""
    runs = results.drop_duplicates("id")
    names = runs["id"].astype(str).map(run_name)
    shared = sorted(names[names.duplicated()].unique())
    return dict(zip(names, runs["status"].astype(str), strict=True)), shared


def timed_runs(results: pd.DataFrame) -> set[str]:
    """The names of the runs the timing engine measured (rows with its noise flag): benchmarks whose status (ok,
    or invalid below a minimum count or time) and whose cases (a time budget skips some) follow their timings."""
    if "label.noise" not in results:
        return set()
    flagged = results["label.noise"].notna() & (results["label.noise"].astype(object).astype(str) != "")
    return set(results.loc[flagged, "id"].astype(str).map(run_name))


def _value_text(row: pd.Series) -> str:
    return f"{float(row['value'])!r}" + (f" {row['unit']}" if row["unit"] else "")


def _unmatched(a: pd.DataFrame, b: pd.DataFrame, timed: set[str]) -> tuple[list[str], list[str]]:
    """The rows of `a` and `b` (keyed frames) without an equal key in the other: left out for a timed benchmark
    (the cases it measured, and why it skipped one, follow its timings); otherwise, within a run and metric with
    as many on each side, paired in order as rows whose labels differ, else rows in one table only."""
    groups = [dict(list(frame.groupby(level=["run", "metric"]))) for frame in (a, b)]
    differences, left = [], 0
    for run, metric in sorted(groups[0].keys() | groups[1].keys()):
        rows_a, rows_b = (group.get((run, metric), frame[:0]) for group, frame in zip(groups, (a, b), strict=True))
        if run in timed:
            left += len(rows_a) + len(rows_b)
        elif len(rows_a) == len(rows_b):
            for (key_a, x), (key_b, y) in zip(rows_a.iterrows(), rows_b.iterrows(), strict=True):
                values = f", value {_value_text(x)} -> {_value_text(y)}" if _value_text(x) != _value_text(y) else ""
                differences.append(f"{run} {metric}: labels [{key_a[2]}] -> [{key_b[2]}]{values}")
        else:
            differences += [f"row in the first table only: {_row_name(key)}" for key in rows_a.index]
            differences += [f"row in the second table only: {_row_name(key)}" for key in rows_b.index]
    cases = f"{left} row(s) of timed benchmarks in one table only (cases measured in one run: a time budget)"
    return differences, [cases] if left else []


def compare_results(first: pd.DataFrame, second: pd.DataFrame, ignore: Sequence[str] = ()) -> Section:
    """Every non-timing metric row of the runs that ended ok in both tidy tables (a timed benchmark: ok or
    invalid), matched by run name, metric and labels (module docstring); runs in one table only and changed
    statuses are differences too."""
    (status_a, shared_a), (status_b, shared_b) = _runs(first), _runs(second)
    differences = [
        f"run in the first table only: {n} ({status_a[n]})" for n in sorted(status_a.keys() - status_b.keys())
    ]
    differences += [
        f"run in the second table only: {n} ({status_b[n]})" for n in sorted(status_b.keys() - status_a.keys())
    ]
    shared = sorted({*shared_a, *shared_b})
    left_out = [f"{n}: several runs of this name (ids that differ only in the hash)" for n in shared]
    both = sorted((status_a.keys() & status_b.keys()) - set(shared))
    timed = timed_runs(first) | timed_runs(second)
    valid = {"ok", "invalid"}
    validity = [n for n in both if status_a[n] != status_b[n] and n in timed and {status_a[n], status_b[n]} <= valid]
    left_out += [f"{n}: status {status_a[n]} -> {status_b[n]} (a timed benchmark's)" for n in validity]
    differences += [
        f"{n}: status {status_a[n]} -> {status_b[n]}" for n in both if status_a[n] != status_b[n] and n not in validity
    ]
    compared_runs = {
        n for n in both if status_a[n] == status_b[n] == "ok" or (n in timed and {status_a[n], status_b[n]} <= valid)
    }
    keyed, timing = [], 0
    for table in (first, second):
        rows = table[table["id"].astype(str).map(run_name).isin(compared_runs)]
        is_timing = timing_rows(rows, ignore)
        timing += int(is_timing.sum())
        keyed.append(_keyed(rows[~is_timing]))
    a, b = keyed
    common = a.index.intersection(b.index)
    found, cases = _unmatched(a.drop(common), b.drop(common), timed)
    differences += found
    left_out += cases
    x, y = a.loc[common], b.loc[common]
    same = (x["value"] == y["value"]) | (x["value"].isna() & y["value"].isna())
    for key in common[~(same & (x["unit"] == y["unit"])).to_numpy()]:
        differences.append(f"{_row_name(key)}: {_value_text(x.loc[key])} -> {_value_text(y.loc[key])}")
    flagged = f"VARYING_METRICS, rows with a noise flag{', --ignore' if ignore else ''}"
    left_out.append(f"{timing} timing or measured-memory row(s) ({flagged})")
    present = set(first["metric"].dropna()) | set(second["metric"].dropna())
    left_out += [f"--ignore {m}: in neither table" for m in ignore if m not in present]
    by_metric = Counter(key[1] for key in common[~(same & (x["unit"] == y["unit"])).to_numpy()])
    notes = (
        [f"differing values by metric: {', '.join(f'{m} {n}' for m, n in by_metric.most_common())}"]
        if by_metric
        else []
    )
    compared = f"{len(common)} metric rows of {len(compared_runs)} runs ok in both"
    return Section("results", compared, tuple(differences), tuple(left_out), tuple(notes))


# ----------------------------------------------------------------------------------------------- claims
def compare_claim_verdicts(first: pd.DataFrame, second: pd.DataFrame, ignore: Sequence[str] = ()) -> Section:
    """The verdict of every claim part in two tidy tables (reference sets included): a part that reads no timing
    and differs is a difference; one that reads a timing, or a metric of `ignore`, is listed as left out."""
    from tradeoffs.report.claims.against import compare_tables
    from tradeoffs.report.claims.spec import load_claims

    claims = load_claims()
    reads = {(c.id, p.id): {m for read in p.judged for m in read.metric} for c in claims for p in c.parts}
    differences, left_out = [], []
    for found in compare_tables(first, second, claims):
        if found.timing:
            left_out.append(f"reads a timing or measured memory: {found.lines()[0]}")
        elif ignored := sorted(reads[found.claim, found.part] & set(ignore)):
            left_out.append(f"reads {', '.join(ignored)} (--ignore): {found.lines()[0]}")
        else:
            differences.append(" | ".join(found.lines()))
    parts = sum(len(claim.parts) for claim in claims)
    return Section("claims", f"verdicts of {parts} parts of {len(claims)} claims", tuple(differences), tuple(left_out))


# ----------------------------------------------------------------------------------------------- products
def _cells(text: str) -> list[list[str]]:
    return [[without_hash(cell) for cell in row] for row in csv.reader(io.StringIO(text))]


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _shape(cells: list[list[str]]) -> list[int]:
    return [len(row) for row in cells]


@dataclass
class _Source:
    """One run's side of a product comparison: the run, its tidy table (reference sets included), the timing
    metrics named with --ignore."""

    run: Run
    results: pd.DataFrame
    ignore: tuple[str, ...]
    cache: dict[tuple[str, str], list[list[str]] | None] = field(default_factory=dict)

    def made(self, kind: str, name: str, results: pd.DataFrame | None = None) -> list[list[str]] | None:
        """The cells of product `name` as this code makes it from the run's table (or `results`); None when the
        table cannot make it."""
        if results is None and (kind, name) in self.cache:
            return self.cache[kind, name]
        import matplotlib.pyplot as plt

        from tradeoffs.report import make, product_csv

        try:
            product = make(kind, name, self.results if results is None else results)
        except ConfigError:
            return None
        text = product_csv(kind, product)
        if kind == "figure":
            plt.close(product)
        if results is None:
            self.cache[kind, name] = _cells(text)
        return _cells(text)

    def timing_cells(self, kind: str, name: str, saved: list[list[str]]) -> set[tuple[int, int]] | str:
        """The cells of the product that change when only the run's timings change, or why they cannot be told:
        the product's rows or columns change with the timings (a reason starting "layout"), or the cells this
        code makes from the run's table are not laid out as the `saved` ones."""
        base = self.made(kind, name)
        if base is None:
            return f"this code cannot make it from the table of {self.run.root}"
        if _shape(base) != _shape(saved):
            return f"the saved data of {self.run.root} is not laid out as this code makes it from its table"
        other = self.made(kind, name, with_other_timings(self.results, self.ignore))
        if other is None or _shape(base) != _shape(other):
            return "layout: its rows or columns change with the timings"
        return {(i, j) for i, row in enumerate(base) for j, cell in enumerate(row) if not _same(cell, other[i][j])}


def _where(kind: str, header: list[str], row: list[str], column: int) -> str:
    named = header[column] if column < len(header) else str(column)
    if kind == "figure" and len(row) > 4:
        return f"axes {row[0]} {row[1]} {row[2]!r} part {row[3]} point {row[4]}, {named}"
    return f"row {row[0]!r}, column {named!r}"


@dataclass(frozen=True)
class _Found:
    differences: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _compare_cells(
    kind: str, name: str, cells: tuple[list[list[str]], list[list[str]]], sources: tuple[_Source, _Source]
) -> _Found:
    """The differences between two runs' cells of one product, and the cells left out as timings: those that
    change as this code makes the product again from either run's table with other timings."""
    first, second = cells
    same_shape = _shape(first) == _shape(second)
    if same_shape and all(_same(a, b) for r, s in zip(first, second, strict=True) for a, b in zip(r, s, strict=True)):
        return _Found()
    masks = [source.timing_cells(kind, name, saved) for source, saved in zip(sources, cells, strict=True)]
    layout = next((m for m in masks if isinstance(m, str) and m.startswith("layout")), "")
    notes = tuple(
        f"{kind} {name}: timing cells not told from one run: {m}"
        for m in masks
        if isinstance(m, str) and not m.startswith("layout")
    )
    if layout:
        return _Found(left_out=(f"{kind} {name}: {layout.removeprefix('layout: ')}",), notes=notes)
    if not same_shape:
        return _Found((f"{kind} {name}: {len(first)} rows in the first run, {len(second)} in the second",), notes=notes)
    timing = set().union(*(m for m in masks if isinstance(m, set)))
    differences, left = [], 0
    for i, (row_a, row_b) in enumerate(zip(first, second, strict=True)):
        for j, (a, b) in enumerate(zip(row_a, row_b, strict=True)):
            if _same(a, b):
                continue
            if (i, j) in timing:
                left += 1
            else:
                differences.append(f"{kind} {name}: {_where(kind, first[0], row_a, j)}: {a!r} -> {b!r}")
    left_out = (f"{kind} {name}: {left} cell(s) that depend on the timings differ",) if left else ()
    return _Found(tuple(differences), left_out, notes)


def _saved(source: _Source, kind: str, name: str) -> tuple[list[list[str]] | None, bool]:
    """The product's saved cells, or for a figure drawn before figures saved their data, the cells this code
    makes from the run's table (and True)."""
    path = source.run.products(kind) / f"{name}.csv"
    if path.is_file():
        return _cells(path.read_text()), False
    if kind == "figure" and path.with_suffix(".png").is_file():
        return source.made(kind, name), True
    return None, False


def _product_names(runs: Sequence[Run], kind: str) -> list[str]:
    suffix = ".png" if kind == "figure" else ".csv"
    found = {p.stem for run in runs for p in run.products(kind).glob(f"*{suffix}")}
    return sorted(found - ({CLAIMS_TABLE} if kind == "table" else set()))


def compare_products(sources: tuple[_Source, _Source], kind: str) -> Section:
    """Every figure's plotted data (`kind` "figure") or every table (`kind` "table") of two runs, cell by cell,
    timing cells apart."""
    differences, left_out, notes = [], [], []
    if kind == "table" and any((s.run.products(kind) / f"{CLAIMS_TABLE}.csv").is_file() for s in sources):
        left_out.append(f"{CLAIMS_TABLE}.csv: the claims' verdicts, compared part by part under claims")
    names = _product_names([s.run for s in sources], kind)
    compared, made = 0, [[], []]
    for name in names:
        (first, made_a), (second, made_b) = (_saved(source, kind, name) for source in sources)
        for remade, was_made in zip(made, (made_a, made_b), strict=True):
            remade += [name] if was_made else []
        if first is None or second is None:
            differences.append(f"{kind} {name}: none in the {'first' if first is None else 'second'} run")
            continue
        compared += 1
        found = _compare_cells(kind, name, (first, second), sources)
        differences += found.differences
        left_out += found.left_out
        notes += found.notes
    notes += [
        f"{source.run.root} saved no plotted data of {len(remade)} figure(s) ({', '.join(remade)}): made again from "
        "its table by this code"
        for source, remade in zip(sources, made, strict=True)
        if remade
    ]
    what = "figures' plotted data" if kind == "figure" else "tables"
    return Section(f"{kind}s", f"{compared} {what}", tuple(differences), tuple(left_out), tuple(notes))


# ----------------------------------------------------------------------------------------------- runs
def compare_runs(first: Path, second: Path, ignore: Sequence[str] = ()) -> Comparison:
    """Compare the outputs of the runs at `first` and `second` (module docstring); `ignore` names metrics left out
    like timings."""
    from tradeoffs.report.reference import with_reference

    runs = (open_run(first), open_run(second))
    tables = [pd.read_parquet(run.table) for run in runs]
    with_sets = [with_reference(table, run.reference) for table, run in zip(tables, runs, strict=True)]
    sources = tuple(_Source(run, table, tuple(ignore)) for run, table in zip(runs, with_sets, strict=True))
    sections = (
        compare_results(*tables, ignore),
        compare_claim_verdicts(*with_sets, ignore),
        compare_products(sources, "figure"),
        compare_products(sources, "table"),
    )
    return Comparison(first, second, sections)
