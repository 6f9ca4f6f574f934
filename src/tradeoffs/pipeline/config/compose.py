"""Composing experiment configs with Hydra: the kinds' schemas registered in Hydra's ConfigStore, compose and
validate, and error messages rewritten to name the bad key, the value and the valid keys or choices.

Each experiment kind has a primary config conf/<kind>.yaml whose defaults list starts with the kind's schema
(registered as "<kind>_schema"), so every group option is merged into a typed node: an unknown key, a wrong
type or an unknown option fails at composition, and impossible values fail in the dataclasses'
__post_init__ when the config is turned into objects. Hydra is imported on first compose, so a job, which only
validates a resolved config, never loads it. Suites (conf/suite/, their schema in suite.py) load here too, their
errors rewritten the same way.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import fields, is_dataclass

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tradeoffs.errors import ConfigError, check_choice, check_finite, check_positive
from tradeoffs.kinds import get_kind, kind_names
from tradeoffs.kinds.base import ExperimentConfig
from tradeoffs.paths import conf_dir, suite_file, use_project
from tradeoffs.pipeline.config.suite import PLANNED_KEYS, SuiteConfig
from tradeoffs.presets import SEARCH_PATH, preset_groups


def _register_presets_search_path() -> None:
    """Add the package's presets (tradeoffs.presets) to every Hydra search path this process creates, after
    conf/: its groups (format, hardware, bench) are options of conf/'s configs, and conf/<group>/<name>.yaml adds
    an option or replaces the preset of its name (Hydra takes the first match on the search path)."""
    from hydra.core.config_search_path import ConfigSearchPath
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    class PresetsSearchPath(SearchPathPlugin):
        def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
            search_path.append(provider="tradeoffs-presets", path=SEARCH_PATH)

    Plugins.instance().register(PresetsSearchPath)


@functools.cache
def register_schemas() -> None:
    """Register every kind's schema in Hydra's ConfigStore as `<kind>_schema`, each option schema of a group as
    `schema/<group>/<option>` (groups.option_schemas), the resolvers conf/ uses, and the presets' place on the
    search path (once per process: the store outlives Hydra sessions, and storing a schema costs a deep copy of
    it)."""
    from hydra.core.config_store import ConfigStore

    from tradeoffs.pipeline.config.groups import option_schemas

    _register_presets_search_path()
    store = ConfigStore.instance()
    for kind in kind_names():
        store.store(name=f"{kind}_schema", node=get_kind(kind).schema)
    for group, schemas in option_schemas().items():
        for option, schema in schemas.items():
            store.store(group=f"schema/{group}", name=option, node=schema)
    if not OmegaConf.has_resolver("min"):  # ${min:20,${steps}} in conf/train.yaml: a default capped by another value
        OmegaConf.register_new_resolver("min", lambda *values: min(values))


def _known_schemas() -> dict[str, type]:
    from tradeoffs.pipeline.config.groups import GROUP_SCHEMAS, option_schemas
    from tradeoffs.pipeline.config.suite import SweepConfig

    kinds = [get_kind(kind).schema for kind in kind_names()]
    options = [schema for schemas in option_schemas().values() for schema in schemas.values()]
    return {cls.__name__: cls for cls in (*GROUP_SCHEMAS.values(), SweepConfig, *kinds, *options)}


def _valid_keys_hint(error: BaseException) -> str:
    """'; valid keys: ...' for the typed node an unknown key was set on."""
    schemas = _known_schemas()
    node_type = getattr(error, "object_type", None)
    if node_type is None and (match := re.search(r"not in '(\w+)'", str(error))):
        node_type = schemas.get(match.group(1))
    if node_type is not None and is_dataclass(node_type):
        return f"; valid keys: {', '.join(f.name for f in fields(node_type))}"
    return ""


def _override_of(error: BaseException, overrides: Sequence[str]) -> str:
    """The override (`key=value`) an error is about, found by the key it names, or ''."""
    for current in (error, error.__cause__, error.__context__):
        key = getattr(current, "full_key", None) or ""
        match = re.search(r"override '([^']+)'|Could not find '([^'/]+)/", str(current))
        key = key or (match and (match.group(1) or match.group(2))) or ""
        for override in reversed(overrides) if key else ():  # the last one of a key is the one applied
            if re.split(r"[=@]", override.lstrip("+~"), maxsplit=1)[0] == key:
                return override
    return ""


def explain(context: str, error: BaseException, overrides: Sequence[str] = ()) -> ConfigError:
    """One ConfigError from a Hydra/OmegaConf error chain: the override it is about (key and value), each
    distinct message, the offending key and, for an unknown key, the valid keys of its node."""
    if override := _override_of(error, overrides):
        context = f"{context}: {override}"
    messages, hint, current = [], "", error
    while current is not None:
        text = str(current).split("Config search path")[0]
        text = " ".join(
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith(("reference_type", "object_type", "To append"))
        )
        if text and not any(text in m for m in messages):
            messages.append(text)
        if not hint:
            hint = _valid_keys_hint(current)
        current = current.__cause__ or current.__context__
    return ConfigError(f"{context}: {' <- '.join(messages)}{hint}")


@contextlib.contextmanager
def hydra_session() -> Iterator[None]:
    """Initialise Hydra on conf/ (then the presets) once for many compose() calls, pointing the library at the
    project (paths.use_project); a no-op inside another session."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    use_project()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        yield


def _selects_an_option(override: str) -> bool:
    """Whether an override chooses a config group's option (`format=mxfp4`, `format@int_format=mxint8`,
    `+recipe=x`, `~data`) rather than setting a value (`model.n_layer=2`): Hydra's own rule, a key that names a
    config group (a directory of conf/ or a group of presets)."""
    key = re.split(r"[=@]", override.lstrip("+~"), maxsplit=1)[0]
    return bool(key) and (key in preset_groups() or (conf_dir() / key).is_dir())


_shared_defaults: dict[tuple[str, tuple[str, ...]], DictConfig] | None = None


@contextlib.contextmanager
def shared_defaults() -> Iterator[None]:
    """Within this block, configs of one kind with the same group options share the composition of their
    defaults list (reading and merging the YAML files, most of a compose's cost): the planner composes a
    study's hundreds of points in one such block, during which conf/ does not change."""
    global _shared_defaults
    previous, _shared_defaults = _shared_defaults, {}
    try:
        yield
    finally:
        _shared_defaults = previous


def _composed_defaults(kind: str, options: tuple[str, ...]) -> DictConfig:
    """conf/<kind>.yaml composed with its group options only: the defaults list merged, before any value is
    set (a copy of the shared one inside `shared_defaults`)."""
    from hydra import compose as hydra_compose

    if _shared_defaults is None:
        return hydra_compose(config_name=kind, overrides=list(options))
    if (kind, options) not in _shared_defaults:
        _shared_defaults[kind, options] = hydra_compose(config_name=kind, overrides=list(options))
    return copy.deepcopy(_shared_defaults[kind, options])


def compose(kind: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/<kind>.yaml with Hydra overrides; raises ConfigError naming the bad key or option.

    As Hydra composes: the group options choose the defaults list, which is merged first, then every value
    override is applied to the result with Hydra's own parser and setter, so the config is the one
    `hydra.compose(kind, overrides)` returns; inside `shared_defaults` the first stage is shared between configs
    with the same options."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode

    check_choice("experiment kind", kind, kind_names())
    chooses = [_selects_an_option(o) for o in overrides]
    options = tuple(o for o, option in zip(overrides, chooses, strict=True) if option)
    values = [o for o, option in zip(overrides, chooses, strict=True) if not option]
    try:
        with hydra_session():
            cfg = _composed_defaults(kind, options)
            parsed = OverridesParser.create().parse_overrides(overrides=values)
            ConfigLoaderImpl.validate_sweep_overrides_legal(parsed, run_mode=RunMode.RUN, from_shell=False)
            ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
            return cfg
    except (HydraException, OmegaConfBaseException) as error:
        raise explain(kind, error, overrides) from None


def check_known_keys(cfg: DictConfig, path: str = "") -> None:
    """Raise ConfigError for a key added to a typed node that its dataclass does not have (a `+key=value`
    override, which Hydra merges into the node and OmegaConf.to_object would silently drop)."""
    schema = OmegaConf.get_type(cfg)
    names = {f.name for f in fields(schema)} if is_dataclass(schema) else None
    for key in cfg:
        if names is not None and key not in names:
            value = OmegaConf.to_container(cfg, resolve=False)[key]
            valid = ", ".join(sorted(names))
            raise ConfigError(f"{path}{key}: unknown key (value {value!r}) in {schema.__name__}; valid keys: {valid}")
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            check_known_keys(node, f"{path}{key}.")


def to_typed(cfg: DictConfig | dict, kind: str | None = None, *, composed: bool = False) -> ExperimentConfig:
    """Turn a composed (or JSON) config into its kind's dataclass, running every validation. `composed`: `cfg` is
    `compose(kind, ...)`'s own result, which Hydra built on the kind's schema, so that every node of it is typed
    already and merging it into a fresh copy of the schema is skipped (that copy is most of this function's cost
    when planning hundreds of experiments)."""
    kind = kind or cfg["kind"]
    check_choice("experiment kind", kind, kind_names())
    schema = get_kind(kind).schema
    if isinstance(cfg, DictConfig):
        check_known_keys(cfg)
    try:
        merged = cfg if composed else OmegaConf.merge(OmegaConf.structured(schema), cfg)
        check_finite("", OmegaConf.to_container(merged, resolve=True))  # NaN passes every range check
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise explain(kind, error) from None
    check_positive("seed", config.seed, allow_zero=True)
    return config


def load_experiment(kind: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Compose and validate one experiment config."""
    return to_typed(compose(kind, overrides), kind, composed=True)


def load_suite(name: str) -> SuiteConfig:
    """Load and validate conf/suite/<name>.yaml."""
    path = suite_file(name)
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SuiteConfig), OmegaConf.load(path)))
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or error
        raise ConfigError(f"suite '{name}': {path} is not valid YAML{line}: {problem}") from None
    except OmegaConfBaseException as error:
        raise explain(f"suite '{name}'", error) from None
    if not suite.experiments:
        raise ConfigError(f"suite '{name}': experiments: no studies in {path}; give at least one (<study>: {{...}})")
    for study, sweep in suite.experiments.items():
        sweep.kind = sweep.kind or study
        check_choice(f"suite '{name}', study '{study}': experiment kind", sweep.kind, kind_names())
        for key, value in {**sweep.fixed, **sweep.sweep, **sweep.zip}.items():
            if key.split(".", 1)[0] in PLANNED_KEYS:
                raise ConfigError(
                    f"suite '{name}', study '{study}': {key} is set by the planner from the study's `source`, "
                    f"not by a suite (got {key}: {value!r}); name the study to read with `source: <study>`; "
                    f"valid studies: {', '.join(suite.experiments)}"
                )
        lengths = {len(values) for values in sweep.zip.values()}
        if len(lengths) > 1:
            raise ConfigError(
                f"suite '{name}', study '{study}': zip axes need lists of one length, got {sorted(lengths)}"
            )
    return suite
