"""A benchmark of the pipeline itself (`python -m tradeoffs bench suite RESULTS_DIR`): where a finished run's
time went. Per kind, the experiments' own work against their start-up (interpreter, imports, reading the
config: a job's wall time from Snakemake's benchmark.tsv minus the experiment's own wall time) and their
cold start (compilation and first calls: a training run's first step beyond its median step, a benchmark
case's first call beyond its median), then the experiments' wall time from the first job's start to the
last one's end and the critical path through the experiments that read others (a study's `source`).

Start-up and cold start are overheads; work is the rest of the experiments' own time.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class JobTime:
    """One experiment's job: its own wall time, its job's (start-up included), its cold start, when it ran."""

    id: str
    kind: str
    job_s: float
    experiment_s: float
    cold_start_s: float
    started: float  # POSIX seconds, start-up included
    ended: float
    source: str = ""

    @property
    def startup_s(self) -> float:
        return max(self.job_s - self.experiment_s, 0.0)

    @property
    def work_s(self) -> float:
        return max(self.experiment_s - self.cold_start_s, 0.0)


@dataclass
class KindTime:
    jobs: int = 0
    job_s: float = 0.0
    work_s: float = 0.0
    startup_s: float = 0.0
    cold_start_s: float = 0.0

    def add(self, job: JobTime) -> None:
        self.jobs += 1
        self.job_s += job.job_s
        self.work_s += job.work_s
        self.startup_s += job.startup_s
        self.cold_start_s += min(job.cold_start_s, job.experiment_s)

    @property
    def overhead_share(self) -> float:
        return (self.startup_s + self.cold_start_s) / self.job_s if self.job_s else math.nan


@dataclass
class SuiteTime:
    """The summary the targets are judged by."""

    kinds: dict[str, KindTime] = field(default_factory=dict)
    wall_s: float = 0.0  # first job's start to last job's end
    critical_path_s: float = 0.0
    critical_path: list[str] = field(default_factory=list)

    @property
    def total(self) -> KindTime:
        total = KindTime()
        for kind in self.kinds.values():
            total.jobs += kind.jobs
            total.job_s += kind.job_s
            total.work_s += kind.work_s
            total.startup_s += kind.startup_s
            total.cold_start_s += kind.cold_start_s
        return total


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _cold_start(record: dict) -> float:
    """Seconds of a run spent on first calls beyond their steady cost (compilation, lazy initialisation)."""
    metrics = record.get("metrics", [])
    by_name = defaultdict(list)
    for metric in metrics:
        by_name[metric["name"]].append(metric)
    if record["kind"] == "train":
        first = [m["value"] for m in by_name.get("cold_start_step", [])]
        steady = [m["value"] for m in by_name.get("step_time_median_s", [])]
        if first and steady:
            return max(first[0] - steady[0], 0.0)
        return 0.0
    medians = {json.dumps(m["labels"], sort_keys=True): m["value"] for m in by_name.get("time_median_s", [])}
    extra = 0.0
    for metric in by_name.get("cold_start_s", []):
        median = medians.get(json.dumps(metric["labels"], sort_keys=True), 0.0)
        if math.isfinite(metric["value"]):
            extra += max(metric["value"] - (median if math.isfinite(median) else 0.0), 0.0)
    return extra


def read_jobs(results_dir: Path) -> list[JobTime]:
    """Every experiment under `results_dir` with a result.json and Snakemake's benchmark.tsv beside it."""
    jobs = []
    for result in sorted(results_dir.glob("*/*/result.json")):
        bench = result.with_name("benchmark.tsv")
        if not bench.is_file():
            continue
        record = json.loads(result.read_text())
        with bench.open() as handle:
            job_s = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
        experiment_s = float(record["timings"]["wall_s"])
        ended = _seconds(record["ended"])
        startup = max(job_s - experiment_s, 0.0)
        jobs.append(
            JobTime(
                id=record["id"],
                kind=record["kind"],
                job_s=job_s,
                experiment_s=experiment_s,
                cold_start_s=_cold_start(record),
                started=_seconds(record["started"]) - startup,
                ended=ended,
                source=(record.get("config") or {}).get("source_id") or "",
            )
        )
    return jobs


def summarize(jobs: list[JobTime]) -> SuiteTime:
    """Per kind totals, the experiments' wall time and the critical path through sources."""
    summary = SuiteTime()
    for job in jobs:
        summary.kinds.setdefault(job.kind, KindTime()).add(job)
    if jobs:
        summary.wall_s = max(j.ended for j in jobs) - min(j.started for j in jobs)
    by_id = {j.id: j for j in jobs}
    memo: dict[str, tuple[float, list[str]]] = {}

    def chain(job_id: str) -> tuple[float, list[str]]:
        if job_id not in memo:
            job = by_id[job_id]
            before, path = chain(job.source) if job.source in by_id else (0.0, [])
            memo[job_id] = (before + job.job_s, [*path, job_id])
        return memo[job_id]

    for job_id in by_id:
        length, path = chain(job_id)
        if length > summary.critical_path_s:
            summary.critical_path_s, summary.critical_path = length, path
    return summary


def report(summary: SuiteTime, cores: int) -> str:
    """The printed summary: per kind, then the totals and the ratios the suite's targets are judged by."""
    lines = [f"{'kind':<14}{'jobs':>6}{'job s':>10}{'work s':>10}{'start-up s':>12}{'cold s':>9}{'overhead':>10}"]
    for name, kind in sorted(summary.kinds.items(), key=lambda item: -item[1].job_s):
        lines.append(
            f"{name:<14}{kind.jobs:>6}{kind.job_s:>10.1f}{kind.work_s:>10.1f}{kind.startup_s:>12.1f}"
            f"{kind.cold_start_s:>9.1f}{100 * kind.overhead_share:>9.1f}%"
        )
    total = summary.total
    lines.append(
        f"{'all':<14}{total.jobs:>6}{total.job_s:>10.1f}{total.work_s:>10.1f}{total.startup_s:>12.1f}"
        f"{total.cold_start_s:>9.1f}{100 * total.overhead_share:>9.1f}%"
    )
    lines += [
        "",
        f"experiment wall time (first job's start to last job's end): {summary.wall_s / 60:.2f} min",
        f"job time / {cores} cores (the wall time with perfect packing): {total.job_s / cores / 60:.2f} min",
        f"start-up + cold start: {100 * total.overhead_share:.1f}% of job time",
        f"critical path ({len(summary.critical_path)} jobs): {summary.critical_path_s / 60:.2f} min: "
        + " -> ".join(summary.critical_path),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m tradeoffs bench suite [RESULTS_DIR] [--cores N]`."""
    parser = argparse.ArgumentParser(prog="tradeoffs bench suite", description=__doc__)
    parser.add_argument("results", type=Path, nargs="?", default=Path("results"), help="a finished run's results/")
    parser.add_argument("--cores", type=int, default=2, help="cores the run had (for the packing bound)")
    args = parser.parse_args(argv)
    jobs = read_jobs(args.results)
    if not jobs:
        raise SystemExit(
            f"error: no experiment in {args.results} has both result.json and Snakemake's benchmark.tsv; "
            "run the suite with snakemake first"
        )
    print(report(summarize(jobs), args.cores))
