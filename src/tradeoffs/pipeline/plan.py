"""The planner: a suite (conf/suite/<name>.yaml) becomes fully resolved experiments with stable ids.

An id reads `<kind>/<axis values joined by _>-<hash8>`, e.g. `numerics/mxfp4_gaussian_none-1a2b3c4d`; the
hash covers every resolved value that affects the result (tradeoffs.identity.config_hash). The Snakefile builds its
DAG from the plan. Because Snakemake re-parses the Snakefile in every job (and every cluster job), a plan
is cached under .snakemake/tradeoffs/, keyed on the contents of conf/ and of the package's sources and presets.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeoffs.errors import ConfigError
from tradeoffs.identity import plain
from tradeoffs.paths import conf_dir, project_root, suite_file
from tradeoffs.resources import JobResources

if TYPE_CHECKING:  # tradeoffs.pipeline.config imports Hydra and torch: only planning needs it, not a cached plan
    from tradeoffs.pipeline.config import SuiteConfig, SweepConfig

_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
NAME_MAX_DEFAULT = 255  # bytes per path component on the usual file systems (ext4, XFS, tmpfs, APFS)


@dataclass(frozen=True)
class PlannedExperiment:
    """One experiment of a plan: its id, kind, the Hydra overrides that compose it, and the resolved config."""

    id: str
    kind: str
    overrides: tuple[str, ...]
    config: dict[str, Any]
    inputs: tuple[str, ...] = ()  # result files of the experiments it reads (its study's `source`)
    # what its job asks a scheduler for on the first try (its kind's sizer)
    job: JobResources = field(default_factory=JobResources)

    @property
    def result_path(self) -> str:
        return f"results/{self.id}/result.json"

    def config_json(self) -> str:
        return json.dumps(self.config, sort_keys=True, separators=(",", ":"))

    def resources(self, attempt: int = 1) -> JobResources:
        """What this experiment's job asks a scheduler for (tradeoffs.resources), on its `attempt`-th try."""
        return self.job.for_attempt(attempt)


@dataclass(frozen=True)
class Plan:
    suite: str
    experiments: tuple[PlannedExperiment, ...]

    def kinds(self) -> list[str]:
        return sorted({e.kind for e in self.experiments})

    def studies(self) -> list[str]:
        """The suite's study names that planned at least one experiment."""
        return sorted({e.config.get("study") or e.kind for e in self.experiments})

    def of_kind(self, kind: str) -> list[PlannedExperiment]:
        return [e for e in self.experiments if e.kind == kind]

    def __getitem__(self, experiment_id: str) -> PlannedExperiment:
        for experiment in self.experiments:
            if experiment.id == experiment_id:
                return experiment
        raise KeyError(f"experiment '{experiment_id}' is not in suite '{self.suite}'")

    def result_paths(self) -> list[str]:
        return [e.result_path for e in self.experiments]


def format_override(key: str, value: Any) -> str:
    """A Hydra override string `key=value` for a scalar or list value."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (list, tuple)):
        text = "[" + ",".join(str(v) for v in value) + "]"
    else:
        text = str(value)
    return f"{key}={text}"


def make_id(kind: str, label_values: list[Any], digest: str) -> str:
    """`<kind>/<label>-<digest>` with the label made of file-name-safe axis values."""
    label = "_".join(_UNSAFE.sub("-", str(v)).strip("-") for v in label_values) or "default"
    return f"{kind}/{label}-{digest}"


def name_max(directory: Path) -> int:
    """The longest file name, in bytes, that the file system holding `directory` (or its nearest existing parent)
    allows: its NAME_MAX from os.pathconf, or the usual 255 where the platform cannot tell."""
    existing = next((p for p in (directory, *directory.parents) if p.exists()), directory.anchor or ".")
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        return NAME_MAX_DEFAULT
    return limit if limit > 0 else NAME_MAX_DEFAULT


def check_id_length(experiment_id: str, directory: Path) -> None:
    """Raise ConfigError when a component of `experiment_id` (the result directory's names under `directory`)
    is longer than the file system allows, naming the limit."""
    limit = name_max(directory)
    for name in experiment_id.split("/"):
        if len(name.encode()) > limit:
            raise ConfigError(
                f"experiment id '{experiment_id[:60]}...': the directory name '{name[:40]}...' is "
                f"{len(name.encode())} bytes, more than the file system allows for one name (NAME_MAX = {limit} "
                f"bytes in {directory}); shorten the study name or its swept values"
            )


def _excluded(point: dict[str, Any], exclude: list[dict[str, Any]]) -> bool:
    def matches(rule_value: Any, value: Any) -> bool:
        return value in rule_value if isinstance(rule_value, list) else value == rule_value

    return any(all(matches(v, point.get(k)) for k, v in rule.items()) for rule in exclude)


def build_plan(suite_name: str) -> Plan:
    """Compose and validate every experiment of a suite (no cache). Fails on the first bad config,
    naming the experiment, before any job runs."""
    from tradeoffs.pipeline.config import hydra_session, load_suite

    suite = load_suite(suite_name)
    with hydra_session():
        return Plan(suite_name, tuple(_plan_experiments(suite_name, suite)))


def resolve_threads(config: Any, job_threads: int) -> None:
    """Fix `hardware.threads` (0: the job's allotment) to the count the run will use, so that it is part of the
    experiment's hash: CPU reductions, hence results, change with the thread count."""
    if not config.hardware.threads:
        config.hardware.threads = job_threads


def job_resources(kind: str, config: Any, attempt: int = 1) -> JobResources:
    """The resources of an experiment of `kind` for its `attempt`-th try, by its kind's sizer as planning asks
    it, from its typed config or a dict of values over the kind's primary config (conf/<kind>.yaml), validated
    first."""
    from omegaconf import OmegaConf

    from tradeoffs.kinds import get_kind
    from tradeoffs.pipeline.config import compose, to_typed

    if isinstance(config, dict):
        primary = compose(kind)
        OmegaConf.set_struct(primary, False)  # the dict may fill open mappings (hardware.unsupported, ...)
        for key, value in config.items():
            default = primary.get(key)
            if (
                isinstance(value, dict)
                and "name" in value
                and OmegaConf.is_dict(default)
                and default.get("name") != value["name"]
            ):
                del primary[key]  # another option of the group (another PTQ method's config): not merged into this one
        config = to_typed(OmegaConf.merge(primary, config), kind)
    return get_kind(kind).resources(config).for_attempt(attempt)


def _grid(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every point of a study: the product of its sweep axes with its zip rows."""
    axes = list(sweep.sweep)
    rows = [dict(zip(sweep.zip, row, strict=True)) for row in zip(*sweep.zip.values(), strict=True)] or [{}]
    return [
        {**dict(zip(axes, values, strict=True)), **row}
        for values in itertools.product(*(sweep.sweep[a] for a in axes))
        for row in rows
    ]


def _matches(config: dict[str, Any], where: dict[str, Any]) -> bool:
    """Whether a resolved config has every dotted key of `where` at that value (or in that list)."""

    def value_at(key: str) -> Any:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    return all(value_at(k) in v if isinstance(v, list) else value_at(k) == v for k, v in where.items())


def _sources(
    suite_name: str, study: str, sweep: SweepConfig, planned: list[PlannedExperiment]
) -> list[PlannedExperiment | None]:
    """The experiments a study reads (those of its `source` study matching `source_where`), or [None]."""
    if not sweep.source:
        return [None]
    sources = [e for e in planned if e.config.get("study") == sweep.source and _matches(e.config, sweep.source_where)]
    if not sources:
        raise ConfigError(
            f"suite '{suite_name}', study '{study}': source '{sweep.source}' has no planned experiment matching "
            f"{sweep.source_where or 'anything'} (a source study must come earlier in the suite)"
        )
    return sources


def _reads_whole_study(kind: str) -> bool:
    """Whether experiments of `kind` read every source experiment at once (their schema has `source_ids`)
    rather than one each (`source`, `source_id`)."""
    from tradeoffs.kinds import get_kind

    return any(f.name == "source_ids" for f in fields(get_kind(kind).schema))


def _set_sources(
    config: Any, batch: list[PlannedExperiment | None], studies_before: list[str], typed: dict[str, Any]
) -> None:
    """Fill the planner's keys of a config from the source experiments it reads: `source_ids` with all of them,
    or `source` (the resolved config) and `source_id` of the one; a kind that reads sources but got none is an
    error. `typed` keeps each source's typed config for the next experiment that reads it."""
    from tradeoffs.pipeline.config import to_typed

    if batch == [None]:
        if hasattr(config, "source_id") or hasattr(config, "source_ids"):
            what = "the experiments of another study" if hasattr(config, "source_ids") else "a trained model"
            raise ConfigError(
                f"source: kind '{config.kind}' reads {what}, but the study names no source study; "
                f"add `source: <study>` (studies before it: {', '.join(studies_before)})"
            )
    elif hasattr(config, "source_ids"):
        config.source_ids = [source.id for source in batch]
    else:
        (source,) = batch
        if source.id not in typed:
            typed[source.id] = to_typed(source.config, source.kind)
        config.source, config.source_id = copy.deepcopy(typed[source.id]), source.id


def _plan_experiments(suite_name: str, suite: SuiteConfig) -> list[PlannedExperiment]:
    from tradeoffs.pipeline.config import shared_defaults

    with shared_defaults():
        return _plan_studies(suite_name, suite)


def _plan_studies(suite_name: str, suite: SuiteConfig) -> list[PlannedExperiment]:
    from tradeoffs.kinds import get_kind
    from tradeoffs.pipeline.config import config_hash, load_experiment

    experiments: list[PlannedExperiment] = []
    seen: dict[str, tuple[str, ...]] = {}
    typed_sources: dict[str, Any] = {}
    results = project_root() / "results"
    for study, sweep in suite.experiments.items():
        kind = sweep.kind
        for rule in sweep.exclude:
            unknown = set(rule) - set(sweep.sweep) - set(sweep.zip)
            if unknown:
                raise ConfigError(
                    f"suite '{suite_name}', {study}.exclude names {sorted(unknown)}, which are not sweep axes "
                    f"({', '.join([*sweep.sweep, *sweep.zip])})"
                )
        fixed = [format_override(k, v) for k, v in {**sweep.fixed, "study": study}.items()]
        sources = _sources(suite_name, study, sweep, experiments)
        whole = sources != [None] and _reads_whole_study(kind)
        batches = [sources] if whole else [[source] for source in sources]
        planned_before = len(experiments)
        for point in _grid(sweep):
            if _excluded(point, sweep.exclude):
                continue
            overrides = (*fixed, *(format_override(k, v) for k, v in point.items()))
            for batch in batches:
                try:
                    config = load_experiment(kind, overrides)
                    _set_sources(config, batch, _studies_before(suite, study), typed_sources)
                except ConfigError as error:
                    raise ConfigError(f"suite '{suite_name}', {study} with {' '.join(overrides)}: {error}") from None
                resources = get_kind(kind).resources(config)
                resolve_threads(config, resources.threads)
                labels = ([] if study == kind else [study]) + list(point.values())
                if not whole and batch != [None]:
                    labels.append(batch[0].id.split("/", 1)[1].rsplit("-", 1)[0])
                experiment_id = make_id(kind, labels, config_hash(config))
                try:
                    check_id_length(experiment_id, results)
                except ConfigError as error:
                    raise ConfigError(f"suite '{suite_name}', study '{study}': {error}") from None
                if experiment_id in seen:
                    raise ConfigError(
                        f"suite '{suite_name}': {' '.join(overrides)} and {' '.join(seen[experiment_id])} give "
                        f"the same experiment {experiment_id}"
                    )
                seen[experiment_id] = overrides
                inputs = tuple(source.result_path for source in batch if source is not None)
                experiments.append(PlannedExperiment(experiment_id, kind, overrides, plain(config), inputs, resources))
        if len(experiments) == planned_before:
            cause = f"exclude: {sweep.exclude} removes every point" if sweep.exclude else "an empty axis: no point"
            raise ConfigError(
                f"suite '{suite_name}', study '{study}': {cause} of the study (sweep {sweep.sweep}, zip {sweep.zip}); "
                "drop an exclusion or give every axis a value"
            )
    return experiments


def _studies_before(suite: SuiteConfig, study: str) -> list[str]:
    names = list(suite.experiments)
    return names[: names.index(study)] or ["none"]


def _inputs_digest() -> str:
    """Hash of conf/ and the package's sources and YAML files (the presets): a plan cache is valid while neither
    changes. The package is all of tradeoffs, not only the pipeline: the kinds and the library decide plans too."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for root, patterns in ((conf_dir(), ("*.yaml",)), (package, ("*.py", "*.yaml"))):
        for path in sorted(p for pattern in patterns for p in root.rglob(pattern)):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


WORKFLOW_CONFIG_KEYS = ("suite",)  # what `snakemake --config KEY=VALUE` may set


def check_workflow_config(config: dict[str, Any]) -> None:
    """Refuse a `snakemake --config` key the workflow does not read (a typo would run the default suite)."""
    for key, value in config.items():
        if key not in WORKFLOW_CONFIG_KEYS:
            raise ConfigError(
                f"--config {key}={value}: unknown key '{key}'; valid keys: {', '.join(WORKFLOW_CONFIG_KEYS)}"
            )


def default_suite() -> str:
    """The suite named in conf/config.yaml."""
    import yaml

    return yaml.safe_load((conf_dir() / "config.yaml").read_text())["suite"]


def plan_cache_path(suite_name: str) -> Path:
    """The cache file of a suite's plan for the current conf/ and sources."""
    suite_file(suite_name)  # a name with a path in it would put the cache outside the project
    return project_root() / ".snakemake" / "tradeoffs" / f"plan-{suite_name}-{_inputs_digest()}.json"


def _read_plan(path: Path) -> Plan:
    raw = json.loads(path.read_text())
    return Plan(
        raw["suite"],
        tuple(
            PlannedExperiment(
                e["id"], e["kind"], tuple(e["overrides"]), e["config"], tuple(e["inputs"]), JobResources(**e["job"])
            )
            for e in raw["experiments"]
        ),
    )


PLAN_ENV = "TRADEOFFS_PLAN"  # the plan file a run's cluster jobs read; sbatch exports it to them


def workflow_plan(suite_name: str, cluster_job: bool) -> Plan:
    """The plan a Snakemake process works from. Snakemake parses the Snakefile again in every cluster job: the
    job reads the plan its run pinned in $TRADEOFFS_PLAN, so editing conf/ during a run changes no job; the run
    loads the plan and pins it for the jobs it submits."""
    if cluster_job:
        return load_plan(suite_name, os.environ.get(PLAN_ENV))
    plan = load_plan(suite_name)
    os.environ[PLAN_ENV] = str(plan_cache_path(suite_name))
    return plan


def load_plan(suite_name: str, pinned: str | Path | None = None) -> Plan:
    """The plan of a suite: the file `pinned` where it exists and holds that suite (a cluster job reads the plan
    its run submitted it with, so editing conf/ during a run changes no job), else the cache while conf/ and
    the sources are unchanged, else a new plan, then cached."""
    if pinned and Path(pinned).is_file() and (plan := _read_plan(Path(pinned))).suite == suite_name:
        return plan
    cache = plan_cache_path(suite_name)
    if cache.is_file():
        return _read_plan(cache)
    plan = build_plan(suite_name)
    cache.parent.mkdir(parents=True, exist_ok=True)
    for stale in cache.parent.glob(f"plan-{suite_name}-*.json"):
        stale.unlink(missing_ok=True)
    temporary = cache.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(plan)))
    temporary.replace(cache)
    return plan
