"""Exceptions with messages a user can act on, and the outcomes an experiment can end with."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and the valid choices."""


class Unsupported(RuntimeError):
    """The experiment cannot run on this hardware or with this combination; recorded, not fatal."""


class Diverged(RuntimeError):
    """Training diverged (NaN/inf or a loss spike); `step` says where. A kind may attach the metrics measured
    before it (e.g. the loss curve) as `metrics`; they are kept in the result."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step
        self.metrics: list = []


class InvalidResult(RuntimeError):
    """The experiment ran but its result fails validation (too few samples, accuracy gate...)."""


def check_choice(key: str, value: object, choices: Iterable[object]) -> None:
    """Raise ConfigError naming `key` and the valid choices unless `value` is one of them."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{key}: invalid value {value!r}; valid choices: {', '.join(map(str, choices))}")


def check_positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless `value` > 0 (or >= 0 with allow_zero)."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}: must be {bound}, got {value}")


def check_finite(key: str, value: Any) -> None:
    """Raise ConfigError naming the dotted key of the first float in `value` (nested dicts and lists, as a
    config's container holds them) that is NaN or infinite; `key` is the prefix of the keys named."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if isinstance(value, dict):
        for name, item in value.items():
            check_finite(f"{key}.{name}" if key else str(name), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_finite(f"{key}[{index}]", item)
