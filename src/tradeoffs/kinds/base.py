"""What every experiment kind shares: the fields of every experiment's config, the job a run gets (its output
directory and the planned inputs it may read), and `Kind`, the one unit a kind module declares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradeoffs.errors import Unsupported
from tradeoffs.hardware import HardwareConfig
from tradeoffs.identity import descriptive
from tradeoffs.resources import JobResources, default_resources
from tradeoffs.results import Outcome


@dataclass
class ExperimentConfig:
    """Fields shared by every experiment kind."""

    kind: str = ""
    study: str = descriptive()  # the suite entry that planned it (reports select rows by it); not hashed
    seed: int = 0
    hardware: HardwareConfig = field(default_factory=HardwareConfig)


def require_cpu(config: ExperimentConfig) -> None:
    """For kinds that compute on the CPU whatever `hardware` says: a run under a GPU's entry would label CPU
    numbers with that GPU's name, so it is unsupported (a result saying so, not a CPU result)."""
    if config.hardware.device != "cpu":
        raise Unsupported(
            f"hardware={config.hardware.name} (device {config.hardware.device}): the {config.kind} kind computes on "
            "the CPU only; run it with hardware=cpu"
        )


@dataclass(frozen=True)
class Job:
    """Where a run writes (its result's directory) and the result files of the experiments it reads, exactly as
    planned (a study's `source`): a kind never builds another experiment's path itself."""

    out_dir: Path
    inputs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Kind:
    """One experiment kind: its schema, its run function and what its jobs ask a scheduler for.

    `resources` sizes a job from the typed config at planning time (the plan stores the answer, so parsing the
    Snakefile, which every cluster job repeats, never imports a kind)."""

    schema: type[ExperimentConfig]
    run: Callable[[Any, Job], Outcome]
    resources: Callable[[Any], JobResources] = default_resources

    @property
    def name(self) -> str:
        return self.schema.kind  # type: ignore[return-value]
