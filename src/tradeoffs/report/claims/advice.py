"""What would decide an undecided part, as the claims report states it: the effect it measured against its
noise band and the runs that would decide it (tradeoffs.report.claims.power), the lever where no count of
runs can (training steps and model size for training runs), and the suite that runs the part's studies at a
larger size (the suite that decided a part is the `suite` column `collect --suite` records)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from tradeoffs.paths import conf_dir
from tradeoffs.report.claims.power import power_lines
from tradeoffs.report.claims.spec import Part
from tradeoffs.report.claims.verdicts import (
    FIT_FAILED,
    HARDWARE_ABSENT,
    INCONCLUSIVE,
    NOT_IN_SUITE,
    RUNS_FAILED,
    UNSTABLE,
    Decision,
)

# The one-machine suites from smallest to largest; a part one of them cannot decide points to the next that
# runs its studies. The paper-size suites (scaling, ptq, gpu) are named where none of these does.
SUITE_LADDER = ("smoke", "quick", "workstation")
SUITE_COLUMN = "suite"  # the suite that collected a row (`tradeoffs collect --suite`, rule collect)


def suites_of(rows: pd.DataFrame) -> list[str]:
    """The suites that collected `rows` (empty when the table records none)."""
    if SUITE_COLUMN not in rows or not len(rows):
        return []
    return sorted(rows[SUITE_COLUMN].dropna().astype(str).unique())


def suite_studies(name: str) -> set[str] | None:
    """The study names of conf/suite/<name>.yaml, None when this checkout has no such suite."""
    path = conf_dir() / "suite" / f"{name}.yaml"
    if not path.is_file():
        return None
    return set(_studies(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=32)
def _studies(path: Path, mtime_ns: int) -> tuple[str, ...]:
    """The study names of a suite file as of its modification time (parsed once per report)."""
    document = yaml.safe_load(path.read_text()) or {}
    return tuple((document.get("experiments") or {}).keys())


def larger_suite(current: Sequence[str], studies: Sequence[str]) -> str:
    """A sentence naming the suite that runs `studies` beyond the `current` one(s), or '' (also when the
    table records no suite: nothing is known to be larger)."""
    if not current:
        return ""
    position = max((SUITE_LADDER.index(s) for s in current if s in SUITE_LADDER), default=-1)
    later = [s for s in SUITE_LADDER[position + 1 :] if s not in current]
    studied = ", ".join(f"`{s}`" for s in studies)
    for name in later:
        planned = suite_studies(name)
        if planned is None and name == later[0]:
            return f"the {name} suite (`make run SUITE={name}`) is meant to decide it"
        if planned is not None and set(studies) <= planned:
            return f"the {name} suite runs {studied} at a larger size: `make run SUITE={name}`"
    papers = sorted(p.stem for p in (conf_dir() / "suite").glob("*.yaml") if p.stem not in (*SUITE_LADDER, *current))
    running = [p for p in papers if set(studies) <= (suite_studies(p) or set())]
    return f"suite(s) {', '.join(running)} run {studied}" if running else ""


def larger_suite_summary(current: Sequence[str], studies: Sequence[Sequence[str]]) -> str:
    """The next one-machine suite after `current`, with how many of the parts (each reading `studies`) it runs
    the studies of, or ''."""
    if not current:
        return ""
    position = max((SUITE_LADDER.index(s) for s in current if s in SUITE_LADDER), default=len(SUITE_LADDER))
    for name in SUITE_LADDER[position + 1 :]:
        planned = suite_studies(name)
        if planned is None:
            return f"the {name} suite (`make run SUITE={name}`) is meant to decide them"
        covered = sum(set(s) <= planned for s in studies)
        if covered:
            return f"the {name} suite (`make run SUITE={name}`) runs the studies of {covered} of them at a larger size"
    return ""


def _values(rows: pd.DataFrame, column: str) -> list[str]:
    if column not in rows:
        return []
    values = rows[column].dropna().unique()
    return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in sorted(values, key=str)]


def lever(rows: pd.DataFrame) -> str:
    """What else than more runs could enlarge the effect: training steps and model size for training runs
    (a quantized model's source for PTQ runs), a finer measurement for the rest."""
    for prefix in ("cfg.", "cfg.source."):
        steps = _values(rows, f"{prefix}steps")
        if steps:
            models = _values(rows, f"{prefix}model.name")
            model = f" than {', '.join(models)}" if models else ""
            return (
                f"a larger effect would: more training steps (these runs: {', '.join(steps)}) or a larger model{model}"
            )
    return "a finer measurement would (its resolution is a fixed property of the measurement)"


def advice(part: Part, decision: Decision, rows: pd.DataFrame, current: Sequence[str]) -> list[str]:
    """The lines that say what would decide an undecided part (none for a decided one)."""
    if decision.verdict != INCONCLUSIVE:
        return []
    if part.criterion == "not_decidable_here":  # no run of any suite decides it
        return [f"evidence outside this pipeline: {part.params.get('reason', '')}"]
    studies = list(dict.fromkeys(r.study for r in part.reads))
    lines: list[str] = []
    if decision.reason == NOT_IN_SUITE:
        pass  # the suite pointer below says where its runs are
    elif decision.reason == HARDWARE_ABSENT:
        lines.append("hardware with units for the dtype (a GPU run kept as a reference set, docs/benchmarks.md)")
    elif decision.reason == RUNS_FAILED:
        lines.append("runs that finish: the failures are named in the test")
    elif decision.reason == FIT_FAILED:
        lines.append("a fit that converges: its own reason is in the test (more runs or a wider range of the variable)")
    else:
        lines += power_lines(decision.bands, lever(rows))
        if decision.reason == UNSTABLE:
            lines.append("a timing is decided from at least 3 fresh-process repeats on a quiet machine")
    pointer = larger_suite(current, studies)
    return lines + ([pointer] if pointer else [])
