"""Result records: the schema of results/<kind>/<id>/result.json, atomic writes, and the tidy table.

The tidy table (results/results.parquet and .csv) has one row per (run, metric); a run without metrics
(failed, unsupported...) is one row with an empty metric. Columns, documented in docs/results.md:
  id, kind, status, message, metric, value, unit, started, ended, wall_s,
  label.<name>  labels that qualify a metric (e.g. label.crest_bin),
  cfg.<dotted.key>  every resolved config value,
  prov.<name>  scalar provenance (host, cpu_model, git_commit, ...),
  suite  the suite whose plan collected the run (`collect --suite`; absent from a table collected by hand).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeoffs.atomic import write_file_atomic, write_files_atomic
from tradeoffs.errors import ConfigError

if TYPE_CHECKING:  # pandas is imported by collect/write_table only: every job imports this module
    import pandas as pd

SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "unsupported", "invalid", "error")
FAILED_STATUSES = ("invalid", "error")  # no usable result; diverged and unsupported are findings, not failures
log = logging.getLogger(__name__)


class UnreadableResult(ValueError):
    """A result.json that is not a complete result record (truncated, hand-edited...); names the file."""


@dataclass
class Metric:
    """One measured number; labels qualify it (a bin, a layer, a shape) within its run."""

    name: str
    value: float
    unit: str = ""
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What an experiment kind returns: its status, metrics, sub-timings and artifact files."""

    status: str = "ok"
    message: str = ""
    metrics: list[Metric] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)


@dataclass
class ResultRecord:
    id: str
    kind: str
    status: str
    message: str
    config: dict[str, Any]
    metrics: list[Metric]
    timings: dict[str, float]
    provenance: dict[str, Any]
    seed: int | None
    started: str
    ended: str
    artifacts: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")


def write_json_atomic(path: Path | str, payload: Any) -> None:
    """Write JSON to `path` through a temporary file in the same directory and a rename, so a reader
    (or an interrupted writer) never sees a partial file; a full disk raises FileWriteError "no space left
    on <path>" and keeps the previous file (tradeoffs.atomic)."""
    data = json.dumps(payload, indent=1, sort_keys=True, allow_nan=True, default=str).encode()
    write_file_atomic(path, lambda stream: stream.write(data))


def write_result(path: Path | str, record: ResultRecord) -> None:
    write_json_atomic(path, asdict(record))


def read_result(path: Path | str) -> ResultRecord:
    """The record in a result.json; UnreadableResult naming the file if it is not a complete record."""
    try:
        raw = json.loads(Path(path).read_text())
        raw["metrics"] = [Metric(**m) for m in raw["metrics"]]
        return ResultRecord(**raw)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UnreadableResult(f"result file {path} is unreadable ({type(error).__name__}: {error})") from None


def unreadable_record(path: Path, error: UnreadableResult) -> ResultRecord:
    """An error record for the experiment whose results/<kind>/<name>/result.json cannot be read."""
    kind, name = path.parent.parent.name, path.parent.name
    return ResultRecord(
        id=f"{kind}/{name}",
        kind=kind,
        status="error",
        message=str(error),
        config={},
        metrics=[],
        timings={},
        provenance={},
        seed=None,
        started="",
        ended="",
    )


def _read_or_error(path: Path | str) -> ResultRecord:
    try:
        return read_result(path)
    except UnreadableResult as error:
        log.warning("%s: collected as an error row", error)
        return unreadable_record(Path(path), error)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def record_rows(record: ResultRecord) -> list[dict[str, Any]]:
    """The tidy-table rows of one result."""
    common: dict[str, Any] = {
        "id": record.id,
        "kind": record.kind,
        "status": record.status,
        "message": record.message,
        "started": record.started,
        "ended": record.ended,
        "wall_s": record.timings.get("wall_s"),
    }
    _flatten("cfg", record.config, common)
    for key, value in record.provenance.items():
        if not isinstance(value, (dict, list)):
            common[f"prov.{key}"] = value
    metrics = record.metrics or [Metric(name=None, value=float("nan"))]  # type: ignore[arg-type]
    rows = []
    for metric in metrics:
        row = {**common, "metric": metric.name, "value": metric.value, "unit": metric.unit}
        row.update({f"label.{k}": v for k, v in metric.labels.items()})
        rows.append(row)
    return rows


def _typed_provenance(frame: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """`frame` with each prov.<name> column typed by the values the records gave it, so that a row without
    provenance (an unreadable result's error row) leaves a text column text and an integer one integer:
    missing values are None in text columns and NA in (nullable) integer and boolean ones."""
    kinds: dict[str, set[type]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("prov.") and value is not None:
                kinds.setdefault(key, set()).add(type(value))
    for column in (c for c in frame.columns if c.startswith("prov.") and frame[c].isna().any()):
        found = kinds.get(column, set())
        if found == {bool}:
            frame[column] = frame[column].astype("boolean")
        elif found == {int}:
            frame[column] = frame[column].astype("Int64")
        elif not found or str in found:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def collect(paths: Iterable[Path | str], suite: str = "") -> pd.DataFrame:
    """All results as one tidy DataFrame (see the module docstring for its columns), each row marked with the
    `suite` that collected it where given. A result file that cannot be read is an error row of its experiment
    naming the file (and a logged warning), so one bad file never blocks the table."""
    import pandas as pd

    rows = [row for path in paths for row in record_rows(_read_or_error(path))]
    if suite:
        rows = [{**row, "suite": suite} for row in rows]
    frame = _typed_provenance(pd.DataFrame(rows), rows)
    leading = ["id", "kind", "status", "message", "metric", "value", "unit"]
    ordered = [c for c in leading if c in frame] + sorted(c for c in frame if c not in leading)
    return frame[ordered] if len(frame) else frame


def write_table(frame: pd.DataFrame, parquet: Path | str, csv: Path | str) -> None:
    """Write the tidy table as Parquet and CSV, atomically: both are renamed into place only once both are
    complete, so a failure (a full disk: FileWriteError naming the file) keeps the previous table."""
    write_files_atomic(
        {
            parquet: lambda stream: frame.to_parquet(stream, index=False),
            csv: lambda stream: frame.to_csv(stream, index=False),
        }
    )


TABLE_COLUMNS = ("id", "kind", "status", "message", "metric", "value", "unit")  # every tidy table has these


def check_table_file(path: Path, what: str = "results table") -> None:
    """Raise ConfigError naming `path` unless it is a Parquet file with the tidy table's columns (TABLE_COLUMNS);
    reads only the file's footer, so it is cheap to call before any work."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    remedy = "give the tidy table `tradeoffs collect` writes (results/results.parquet)"
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found: collect the results first (`tradeoffs collect`)")
    if path.stat().st_size == 0:
        raise ConfigError(f"{what} {path} is an empty file (0 bytes); {remedy}")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as error:
        with path.open("rb") as stream:
            head = stream.read(200)
        looks = " (it reads as CSV text)" if b"," in head.split(b"\n", 1)[0] and head.isascii() else ""
        raise ConfigError(f"{what} {path} is not a Parquet file{looks}: {str(error).rstrip('.')}; {remedy}") from None
    missing = [column for column in TABLE_COLUMNS if column not in names]
    if missing:
        have = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") or "none"
        raise ConfigError(
            f"{what} {path} lacks the tidy table's column(s) {', '.join(missing)} (its columns: {have}); {remedy}"
        )
