"""Composing experiment configs with Hydra: the kinds' schemas registered in Hydra's ConfigStore, compose and
validate, and error messages rewritten to name the bad key, the value and the valid keys or choices.

Each experiment kind has a primary config conf/<kind>.yaml whose defaults list starts with the kind's schema
(registered as "<kind>_schema"), so every group option is merged into a typed node: an unknown key, a wrong
type or an unknown option fails at composition, and impossible values fail in the dataclasses'
__post_init__ when the config is turned into objects. Hydra is imported on first compose, so a job, which only
validates a resolved config, never loads it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.kinds import get_kind, kind_names
from tradeoffs.kinds.base import ExperimentConfig
from tradeoffs.paths import conf_dir


def register_schemas() -> None:
    """Register every kind's schema in Hydra's ConfigStore as `<kind>_schema` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for kind in kind_names():
        store.store(name=f"{kind}_schema", node=get_kind(kind).schema)


def _known_schemas() -> dict[str, type]:
    from tradeoffs.config.groups import GROUP_SCHEMAS

    kinds = [get_kind(kind).schema for kind in kind_names()]
    return {cls.__name__: cls for cls in (*GROUP_SCHEMAS.values(), *kinds)}


def _valid_keys_hint(error: BaseException) -> str:
    """'; valid keys: ...' for the typed node an unknown key was set on."""
    schemas = _known_schemas()
    node_type = getattr(error, "object_type", None)
    if node_type is None and (match := re.search(r"not in '(\w+)'", str(error))):
        node_type = schemas.get(match.group(1))
    if node_type is not None and is_dataclass(node_type):
        return f"; valid keys: {', '.join(f.name for f in fields(node_type))}"
    return ""


def explain(context: str, error: BaseException) -> ConfigError:
    """One ConfigError from a Hydra/OmegaConf error chain: each distinct message, the offending key and,
    for an unknown key, the valid keys of its node."""
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
    """Initialise Hydra on conf/ once for many compose() calls (a no-op inside another session)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        yield


def compose(kind: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/<kind>.yaml with Hydra overrides; raises ConfigError naming the bad key or option."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException

    check_choice("experiment kind", kind, kind_names())
    try:
        with hydra_session():
            return hydra_compose(config_name=kind, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise explain(kind, error) from None


def to_typed(cfg: DictConfig | dict, kind: str | None = None) -> ExperimentConfig:
    """Turn a composed (or JSON) config into its kind's dataclass, running every validation."""
    kind = kind or cfg["kind"]
    check_choice("experiment kind", kind, kind_names())
    schema = get_kind(kind).schema
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise explain(kind, error) from None


def load_experiment(kind: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Compose and validate one experiment config."""
    return to_typed(compose(kind, overrides), kind)


def as_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict of a config dataclass."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)
