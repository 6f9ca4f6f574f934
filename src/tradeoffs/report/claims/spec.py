"""The claims' entries (conf/claims.yaml) as typed records, validated when loaded.

A claim has parts, each decided by a named criterion (tradeoffs.report.claims.criteria) over named reads: the
rows of one study's runs that match a filter, and one or more of their metrics. `study`, `metric`, `where`,
`statuses` and `unit` given on a claim or a part are the defaults of everything below it (`where` merges).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tradeoffs.errors import ConfigError
from tradeoffs.paths import conf_dir
from tradeoffs.report.claims.criteria import CRITERIA

STATUSES = ("ok", "diverged", "unsupported", "invalid", "error")
INHERITED = ("study", "metric", "where", "statuses", "unit")
CLAIM_KEYS = ("id", "papers", "statement", "note", "parts", *INHERITED)
PART_KEYS = ("id", "statement", "criterion", "params", "reads", "across", "paper_note", *INHERITED)
READ_KEYS = ("label", "paper", "at_max", "show", *INHERITED)


def claims_path() -> Path:
    return conf_dir() / "claims.yaml"


@dataclass(frozen=True)
class Read:
    """The rows a criterion reads: runs of `study` with one of `statuses` whose columns equal `where` (a list
    matches any of its values), their rows of `metric` (every row when empty), only those at the largest
    value of column `at_max` when given. `paper` is the paper's number for it; `show` reads are reported,
    not judged."""

    name: str
    study: str
    metric: tuple[str, ...] = ()
    where: Mapping[str, Any] = field(default_factory=dict)
    statuses: tuple[str, ...] = ("ok",)
    at_max: str = ""
    label: str = ""
    paper: float | None = None
    unit: str = ""
    show: bool = False


@dataclass(frozen=True)
class Part:
    """One verdict of a claim: `criterion` applied with `params` to `reads`, separately for every value (or
    combination) of the `across` columns, which must all agree."""

    id: str
    statement: str
    criterion: str
    params: Mapping[str, Any]
    reads: tuple[Read, ...]
    across: tuple[str, ...] = ()
    paper_note: str = ""

    @property
    def judged(self) -> tuple[Read, ...]:
        return tuple(r for r in self.reads if not r.show)


@dataclass(frozen=True)
class Claim:
    id: str
    papers: tuple[str, ...]
    statement: str
    parts: tuple[Part, ...]
    note: str = ""

    @property
    def studies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.study for p in self.parts for r in p.reads))


def _check_keys(where: str, entry: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {entry!r}")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(allowed)}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")


def _inherit(defaults: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    merged = {k: defaults[k] for k in INHERITED if k in defaults}
    for key in INHERITED:
        if key in entry:
            merged[key] = {**merged.get("where", {}), **entry[key]} if key == "where" else entry[key]
    return merged


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _read(where: str, name: str, entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> Read:
    _check_keys(where, entry, READ_KEYS)
    merged = _inherit(defaults, entry)
    if "study" not in merged:
        raise ConfigError(f"{where}: no study (give `study` on the read, its part or its claim)")
    statuses = _as_tuple(merged.get("statuses", ("ok",)))
    for status in statuses:
        if status not in STATUSES:
            raise ConfigError(f"{where}.statuses: invalid value {status!r}; valid choices: {', '.join(STATUSES)}")
    if not isinstance(merged.get("where", {}), Mapping):
        raise ConfigError(f"{where}.where: expected a mapping of column: value(s), got {merged['where']!r}")
    return Read(
        name=name,
        study=str(merged["study"]),
        metric=tuple(str(m) for m in _as_tuple(merged.get("metric"))),
        where=dict(merged.get("where", {})),
        statuses=statuses,
        at_max=str(entry.get("at_max", "")),
        label=str(entry.get("label", "")),
        paper=None if entry.get("paper") is None else float(entry["paper"]),
        unit=str(merged.get("unit", "")),
        show=bool(entry.get("show", False)),
    )


def _check_criterion(where: str, name: str, params: Mapping[str, Any], reads: tuple[Read, ...]) -> None:
    if name not in CRITERIA:
        raise ConfigError(f"{where}.criterion: invalid value {name!r}; valid choices: {', '.join(sorted(CRITERIA))}")
    criterion = CRITERIA[name]
    judged = [r.name for r in reads if not r.show]
    if criterion.reads is not None and sorted(judged) != sorted(criterion.reads):
        raise ConfigError(f"{where}.reads: criterion {name} judges reads {list(criterion.reads)}, got {judged}")
    if criterion.reads is None and not judged:
        raise ConfigError(f"{where}.reads: criterion {name} needs at least one judged read")
    signature = inspect.signature(criterion.function)
    keywords = [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(keywords))
    if unknown:
        raise ConfigError(f"{where}.params: unknown parameter(s) {unknown} of {name}; valid: {', '.join(keywords)}")
    required = [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    missing = [p for p in required if p not in params]
    if missing:
        raise ConfigError(f"{where}.params: {name} needs {missing}")


def _part(where: str, entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> Part:
    _check_keys(where, entry, PART_KEYS, ("id", "statement", "criterion", "reads"))
    merged = _inherit(defaults, entry)
    reads_entry = entry["reads"]
    if not isinstance(reads_entry, Mapping) or not reads_entry:
        raise ConfigError(f"{where}.reads: expected a non-empty mapping of name: read")
    reads = tuple(_read(f"{where}.reads.{name}", str(name), r or {}, merged) for name, r in reads_entry.items())
    params = dict(entry.get("params") or {})
    _check_criterion(where, str(entry["criterion"]), params, reads)
    across = tuple(str(c) for c in _as_tuple(entry.get("across")))
    return Part(
        id=str(entry["id"]),
        statement=str(entry["statement"]).strip(),
        criterion=str(entry["criterion"]),
        params=params,
        reads=reads,
        across=across,
        paper_note=str(entry.get("paper_note", "")).strip(),
    )


def _claim(index: int, entry: Mapping[str, Any]) -> Claim:
    where = f"claims[{index}]"
    _check_keys(where, entry, CLAIM_KEYS, ("id", "papers", "statement", "parts"))
    where = f"claims[{entry['id']}]"
    parts = tuple(_part(f"{where}.parts[{i}]", p, entry) for i, p in enumerate(entry["parts"] or []))
    if not parts:
        raise ConfigError(f"{where}.parts: a claim needs at least one part")
    ids = [p.id for p in parts]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}.parts: part ids repeat: {ids}")
    return Claim(
        id=str(entry["id"]),
        papers=tuple(str(p) for p in _as_tuple(entry["papers"])),
        statement=" ".join(str(entry["statement"]).split()),
        parts=parts,
        note=" ".join(str(entry.get("note", "")).split()),
    )


def parse_claims(document: Mapping[str, Any]) -> tuple[Claim, ...]:
    """The claims of a parsed claims file, validated (ConfigError naming the entry and key)."""
    entries = document.get("claims") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError("claims file: expected a top-level `claims:` list")
    claims = tuple(_claim(i, e) for i, e in enumerate(entries))
    ids = [c.id for c in claims]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"claims file: claim ids repeat: {repeated}")
    return claims


def load_claims(path: Path | None = None) -> tuple[Claim, ...]:
    """The claims of conf/claims.yaml (or `path`)."""
    path = path or claims_path()
    return parse_claims(yaml.safe_load(path.read_text()))
