"""The benchmark CLIs' targets (bench qdq, bench train): the `targets:` of targets.yaml beside this module,
package data that ships with the library and is their only source."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from tradeoffs.errors import ConfigError

TARGET_KEYS = ("statement", "low", "high", "unit", "applies_to")


@dataclass(frozen=True)
class Target:
    """A measured value meets the target when it is >= low and <= high (either bound may be absent)."""

    name: str
    statement: str
    low: float | None = None
    high: float | None = None
    unit: str = ""
    applies_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ConfigError(f"targets.{self.name}: give `low`, `high` or both")

    def met(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    @property
    def bound(self) -> str:
        """The target as text, e.g. '>= 40.0'."""
        parts = [
            f">= {self.low}" if self.low is not None else "",
            f"<= {self.high}" if self.high is not None else "",
        ]
        return " and ".join(p for p in parts if p)

    def verdict(self, value: float) -> str:
        return f"target {self.bound}: {'met' if self.met(value) else 'not met'}"


def parse_targets(section: object) -> dict[str, Target]:
    """The targets of a parsed `targets:` mapping (ConfigError naming the key on a bad entry)."""
    if not isinstance(section, dict):
        raise ConfigError(f"targets: expected a mapping of name: target, got {section!r}")
    targets = {}
    for name, entry in section.items():
        unknown = sorted(set(entry or {}) - set(TARGET_KEYS))
        if not isinstance(entry, dict) or unknown:
            raise ConfigError(f"targets.{name}: unknown key(s) {unknown}; valid keys: {', '.join(TARGET_KEYS)}")
        targets[name] = Target(
            name=name,
            statement=str(entry.get("statement", "")),
            low=None if entry.get("low") is None else float(entry["low"]),
            high=None if entry.get("high") is None else float(entry["high"]),
            unit=str(entry.get("unit", "")),
            applies_to=tuple(entry.get("applies_to", ())),
        )
    return targets


def load_targets(path: Path | None = None) -> dict[str, Target]:
    """The targets of the package's targets.yaml (or of the `targets:` section of the YAML file `path`)."""
    document = yaml.safe_load((path or files(__package__) / "targets.yaml").read_text())
    return parse_targets(document.get("targets", {}) if isinstance(document, dict) else None)


def target(name: str) -> Target:
    """One of the package's targets by name."""
    targets = load_targets()
    if name not in targets:
        raise ConfigError(f"target {name!r} is not in bench/targets.yaml; valid choices: {', '.join(targets)}")
    return targets[name]
