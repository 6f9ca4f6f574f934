"""The quant kind: post-training quantization of a trained model (tradeoffs.quant) scored against its full-precision
self (tradeoffs.evaluate). Base model x method x spec (x injected outlier magnitude) -> one result.

The source train experiment's checkpoint (the planned input) is read, outliers are optionally injected without
changing its function, a copy is kept as the full-precision reference, the model is quantized in place
(calibrated on windows of the calibration split) and both are scored on the first `eval_tokens` tokens of the
evaluation split under a named protocol. Calibration and evaluation tokens are checked to be disjoint in the
corpus's coordinates (the splits are contiguous: train | validation | test).

The method is an option of the conf/method/ group (`method=gptq`); each option's schema is the library config of
its method, derived from it (method_schema), so the kind lists no method and mirrors none of their settings.

Metrics (labelled by the protocol where they come from a score): `log_likelihood`, `tokens`, `bytes`, `loss`,
`perplexity`, `bits_per_byte` and their `reference_*` twins; `kl` (KL(full precision || quantized) per token),
`kl_sum`, `top1_agreement`, `loss_change` (nats); `bits_per_weight` (quantized layers, scales included),
`memory_bytes` (quantized layers at their bits, the rest at 16 bits), `reference_memory_bytes` (all at 16 bits),
`quantized_layers`, `calibration_tokens`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import torch

from tradeoffs.bench.hardware import check_device
from tradeoffs.data import Dataset, load_dataset
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.evaluate import (
    TokenRange,
    bits_per_weight,
    calibration_windows,
    check_disjoint,
    compare,
    get_protocol,
    memory_footprint,
)
from tradeoffs.formats import get_format
from tradeoffs.identity import descriptive
from tradeoffs.kinds.base import ExperimentConfig, Job, Kind
from tradeoffs.kinds.sources import load_trained_model
from tradeoffs.kinds.train import TrainExperimentConfig
from tradeoffs.models import build_model, count_parameters
from tradeoffs.quant import (
    METHODS,
    OutlierConfig,
    QuantSpec,
    check_config,
    get_spec,
    inject_outliers,
    method_config,
    needs_calibration,
    quantize_,
)
from tradeoffs.resources import JobResources, default_resources, round_up
from tradeoffs.results import Metric, Outcome

SPLITS = ("train", "validation", "test")  # the corpus's contiguous order
PROTOCOLS = ("rolling", "sliding")
OPERANDS = ("weight", "activation", "kv_cache")


@dataclass
class SpecOptions:
    """A spec of tradeoffs.quant by name with per-operand overrides: `weight`/`activation`/`kv_cache` a format
    name (conf/format/ or an element name), "" for the named spec's default, `activation: none` for full
    precision; the weight's scale layout (`format`, `tensor`, `channel`, `group` of `group_size`)."""

    name: str = "W4A16"
    weight: str = ""
    activation: str = ""
    kv_cache: str = ""
    weight_granularity: str = "format"
    group_size: int = 128
    lm_head: bool = False

    def build(self) -> QuantSpec:
        """The library's QuantSpec (ConfigError naming the key under `method.spec`)."""
        overrides = {key: getattr(self, key) for key in OPERANDS if getattr(self, key)}
        if overrides.get("activation") == "none":
            overrides["activation"] = ""
        for key, value in overrides.items():
            if value:
                _prefixed(f"method.spec.{key}: ", get_format, value)
        return _prefixed(
            "method.",
            get_spec,
            self.name,
            **overrides,
            weight_granularity=self.weight_granularity,
            group_size=self.group_size,
            lm_head=self.lm_head,
        )

    @classmethod
    def of(cls, spec: QuantSpec | str) -> SpecOptions:
        """The pipeline form of a library spec: its name, and each operand that differs from the named spec's."""
        if isinstance(spec, str):
            return cls(name=spec)
        named = get_spec(spec.name)
        operands = {key: getattr(spec, key) or "none" for key in OPERANDS if getattr(spec, key) != getattr(named, key)}
        if any(not isinstance(value, str) for value in operands.values()):
            raise ValueError(f"spec {spec.label}: operands {operands} are not format names")
        kept = {f.name: getattr(spec, f.name) for f in dataclasses.fields(cls) if f.name not in (*OPERANDS, "name")}
        return cls(name=spec.name, **operands, **kept)


# The `method` group (conf/method/<option>.yaml): each option's schema is the library's config of its method
# (tradeoffs.quant.METHODS), made a Hydra schema: the same fields and defaults, with `name` (the method's) first and
# the spec as SpecOptions; nested settings (GPTQ, FormatSearch) likewise, tuples as lists.


@functools.cache
def method_schema(name: str) -> type:
    """The Hydra schema of method `name`, from its library config (ConfigError naming the valid methods)."""
    check_choice("method", name, METHODS)
    config_type = METHODS[name]
    hints = typing.get_type_hints(config_type)
    specs: list[tuple] = [("name", str, field(default=name))]
    for f in dataclasses.fields(config_type):
        if f.name == "spec":
            specs.append(("spec", SpecOptions, _default(SpecOptions.of(_library_default(f)))))
        else:
            specs.append((f.name, _schema_type(hints[f.name]), _default(_schema_value(_library_default(f)))))
    schema = dataclasses.make_dataclass(config_type.__name__, specs)
    schema.__module__ = __name__
    schema.__doc__ = f"The settings of method {name} ({config_type.__module__}.{config_type.__name__})."
    return schema


def method_schemas() -> dict[str, type]:
    """Every method's Hydra schema by method name."""
    return {name: method_schema(name) for name in METHODS}


@functools.cache
def _settings_schema(cls: type) -> type:
    hints = typing.get_type_hints(cls)
    specs = [
        (f.name, _schema_type(hints[f.name]), _default(_schema_value(_library_default(f))))
        for f in dataclasses.fields(cls)
    ]
    schema = dataclasses.make_dataclass(cls.__name__, specs)
    schema.__module__ = __name__
    return schema


def _schema_type(hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"a method config's field of type {hint}: only X | None is a Hydra schema type")
        return typing.Optional[_schema_type(options[0])]  # noqa: UP045 (a runtime type for OmegaConf)
    if origin in (tuple, list):
        return list[_schema_type(args[0])] if args else list
    if origin is dict:
        return dict[args[0], _schema_type(args[1])]
    return _settings_schema(hint) if dataclasses.is_dataclass(hint) else hint


def _library_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _schema_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _settings_schema(type(value))(
            **{f.name: _schema_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
        )
    if isinstance(value, (tuple, list)):
        return [_schema_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _schema_value(v) for k, v in value.items()}
    return value


def _default(value: Any) -> Any:
    if isinstance(value, (list, dict)) or dataclasses.is_dataclass(value):
        return field(default_factory=lambda: copy.deepcopy(value))
    return field(default=value)


def method_settings(value: Any) -> Any:
    """A QuantConfig's `method` as its schema's instance: a composed one checked to be the method its `name` says,
    a plain dict (a resolved config read back) typed by its `name`, None the default (rtn)."""
    if value is None:
        return method_schema("rtn")()
    if isinstance(value, dict):
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        name = value.get("name", "")
        check_choice("method.name", name, METHODS)
        try:
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(method_schema(name)), value))
        except OmegaConfBaseException as error:
            node = getattr(error, "object_type", None)
            valid = f"; valid keys: {', '.join(f.name for f in dataclasses.fields(node))}" if node else ""
            message = str(error).splitlines()[0]
            raise ConfigError(f"method.{getattr(error, 'full_key', '')}: {message}{valid}") from None
    chosen = next((name for name in METHODS if method_schema(name) is type(value)), None)
    if chosen is None or value.name != chosen:
        raise ConfigError(
            f"method.name: '{value.name}' names another method than the settings chosen ({chosen}); choose the "
            f"method with the group override method=<name> (conf/method/), valid choices: {', '.join(METHODS)}"
        )
    return value


def build_method(settings: Any) -> Any:
    """The library's method config from its settings, validated (ConfigError naming the key and the valid
    choices)."""
    values = {
        f.name: _plain(getattr(settings, f.name))
        for f in dataclasses.fields(settings)
        if f.name not in ("name", "spec")
    }
    return _prefixed("method.", method_config, settings.name, spec=settings.spec.build(), **values)


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _prefixed(prefix: str, function, *args, **kwargs):
    """Call a library constructor, naming the pipeline key its ConfigError is about."""
    try:
        return function(*args, **kwargs)
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}") from None


@dataclass
class QuantConfig(ExperimentConfig):
    """Post-training quantization of the model of a `source` train experiment (set by the planner from the suite's
    source study), scored against its full-precision self on the evaluation split."""

    kind: str = "quant"
    source: TrainExperimentConfig = field(default_factory=TrainExperimentConfig)
    source_id: str = descriptive()  # the train experiment whose checkpoint is read (its config is `source`)
    # a conf/method/ option (method=<name>): the settings of a library method config (method_schema); None: rtn's
    method: Any = None
    outlier_scale: float = 1.0  # k of the function-preserving outlier injection (1: none)
    outlier_channels: int = 4
    calibration_split: str = "train"
    calibration_samples: int = 32
    calibration_length: int = 0  # tokens per sample; 0: the source model's context length
    eval_split: str = "validation"
    eval_tokens: int = 8192  # the first tokens of the evaluation split; 0: all of it
    protocol: str = "rolling"  # rolling (lm-eval loglikelihood_rolling) | sliding
    stride: int = 0  # sliding windows: 0 is half the context
    prefix_token: int = 0  # rolling: the token the first window is conditioned on
    batch_size: int = 8  # windows per forward (calibration and evaluation)

    def __post_init__(self) -> None:
        self.method = method_settings(self.method)
        method = build_method(self.method)
        if self.outlier_scale < 1:
            raise ConfigError(f"outlier_scale: must be >= 1 (1: no injected outliers), got {self.outlier_scale}")
        OutlierConfig(self.outlier_scale, self.outlier_channels, self.seed)
        check_choice("calibration_split", self.calibration_split, SPLITS)
        check_choice("eval_split", self.eval_split, SPLITS)
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_positive("batch_size", self.batch_size)
        for key in ("calibration_length", "eval_tokens", "stride", "prefix_token"):
            check_positive(key, getattr(self, key), allow_zero=True)
        if needs_calibration(method):
            check_positive("calibration_samples", self.calibration_samples)

    @property
    def context_length(self) -> int:
        return self.source.model.context_length

    @property
    def sample_length(self) -> int:
        return self.calibration_length or self.context_length


def check_source(config: QuantConfig) -> Any:
    """Check the method against the source's architecture (group sizes dividing the input features, SmoothQuant's
    layers fed by a norm, rotation's Hadamard size) on a weightless copy of it, before any checkpoint is read;
    the planner's sizer runs it too, once the source is known."""
    method = build_method(config.method)
    if config.sample_length > config.context_length:
        raise ConfigError(
            f"calibration_length: {config.calibration_length} exceeds the source model's context length "
            f"{config.context_length}; valid: 0 (the context length) to {config.context_length}"
        )
    with torch.device("meta"):
        model = build_model(config.source.model)
    check_config(model, method, torch.zeros((1, 1), dtype=torch.long))
    return method


def _offsets(dataset: Dataset) -> dict[str, int]:
    offsets, start = {}, 0
    for split in SPLITS:
        offsets[split] = start
        start += len(dataset.splits[split])
    return offsets


def _data(config: QuantConfig, method: Any, dataset: Dataset) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Calibration windows (or None) and evaluation tokens, checked to lie in their splits and to be disjoint."""
    evaluation = dataset.splits[config.eval_split]
    n_eval = config.eval_tokens or len(evaluation)
    if n_eval > len(evaluation):
        raise ConfigError(
            f"eval_tokens: {n_eval} exceeds the {len(evaluation)} tokens of split '{config.eval_split}' of "
            f"{dataset.name}; valid: 0 (all) to {len(evaluation)}"
        )
    offsets, corpus = _offsets(dataset), dataset.name
    evaluated = [TokenRange(corpus, offsets[config.eval_split], offsets[config.eval_split] + n_eval)]
    calibration = None
    if needs_calibration(method):
        calibration, ranges = calibration_windows(
            dataset.splits[config.calibration_split],
            config.calibration_samples,
            config.sample_length,
            config.seed,
            config.calibration_split,
        )
        shift = offsets[config.calibration_split]
        check_disjoint([TokenRange(corpus, r.start + shift, r.stop + shift) for r in ranges], evaluated)
    return calibration, torch.from_numpy(evaluation[:n_eval].astype("int64"))


def _score_metrics(prefix: str, score, dataset: Dataset, split: str) -> list[Metric]:
    labels = {"protocol": score.protocol}
    n_bytes = score.tokens * dataset.bytes_per_token(split)
    return [
        Metric(f"{prefix}log_likelihood", score.log_likelihood, "nats", labels),
        Metric(f"{prefix}loss", score.loss, "nats", labels),
        Metric(f"{prefix}perplexity", score.perplexity, "", labels),
        Metric(f"{prefix}bits_per_byte", dataset.bits_per_byte(score.loss, split), "bit/byte", labels),
        *([Metric("tokens", score.tokens, "token", labels), Metric("bytes", n_bytes, "byte", labels)] * (not prefix)),
    ]


def _operands(spec: QuantSpec) -> dict[str, str]:
    """The element of each operand's format ("" for full precision): what a kernel for it computes in."""
    activation = spec.activation_format
    return {
        "weight_element": spec.weight_format.element,
        "activation_element": "" if spec.weight_only or activation is None else activation.element,
        "weight_granularity": spec.weight_format.granularity,
    }


def _search_metrics(result) -> list[Metric]:
    """What a format search chose, pooled over the quantized layers weighted by their rows x inputs: the share of
    weights per candidate element and the mean clipping ratio."""
    if not result.searched:
        return []
    shares: dict[str, float] = {}
    ratio, total = 0.0, 0
    for found in result.searched.values():
        rows, inputs = found.weight.shape
        for element, share in found.element_shares().items():
            shares[element] = shares.get(element, 0.0) + share * rows * inputs
        ratio += float(found.clip_ratio.sum()) * inputs
        total += rows * inputs
    return [
        *(Metric("search_element_share", value / total, "", {"element": name}) for name, value in shares.items()),
        Metric("search_clip_ratio", ratio / total),
    ]


def run(config: QuantConfig, job: Job) -> Outcome:
    device = check_device(config.hardware)
    method = check_source(config)
    dataset = load_dataset(config.source.data)
    calibration, tokens = _data(config, method, dataset)
    model = load_trained_model(job, config.source, config.source_id).model.to(device)
    if config.outlier_scale != 1:
        inject_outliers(model, OutlierConfig(config.outlier_scale, config.outlier_channels, config.seed))
    reference = copy.deepcopy(model)
    start = time.perf_counter()
    result = quantize_(
        model, method, None if calibration is None else calibration.to(device), batch_size=config.batch_size
    )
    quantize_s = time.perf_counter() - start
    protocol = get_protocol(
        config.protocol, config.context_length, stride=config.stride or None, prefix_token=config.prefix_token
    )
    start = time.perf_counter()
    comparison = compare(model, reference, tokens, protocol, batch_size=config.batch_size)
    evaluate_s = time.perf_counter() - start
    labels = {"protocol": protocol.label}
    metrics = [
        *_score_metrics("", comparison.model, dataset, config.eval_split),
        *_score_metrics("reference_", comparison.reference, dataset, config.eval_split),
        Metric("kl", comparison.kl, "nats/token", labels),
        Metric("kl_sum", comparison.kl_sum, "nats", labels),
        Metric("top1_agreement", comparison.top1_agreement, "", labels),
        Metric("loss_change", comparison.loss_change, "nats", labels),
        Metric("bits_per_weight", bits_per_weight(model), "bit", _operands(result.spec)),
        Metric("memory_bytes", memory_footprint(model), "byte", {"dense_bits": 16}),
        Metric("reference_memory_bytes", memory_footprint(reference), "byte", {"dense_bits": 16}),
        Metric("quantized_layers", len(result.bits)),
        Metric("calibration_tokens", 0 if calibration is None else calibration.numel(), "token"),
        *_search_metrics(result),
    ]
    return Outcome(metrics=metrics, timings={"quantize_s": quantize_s, "evaluate_s": evaluate_s})


def resources(config: QuantConfig) -> JobResources:
    """A small job (grouped with its kind's on a cluster), after checking the method against the source's
    architecture; memory for two copies of the model and GPTQ's Hessians beside torch (about 1.5 GB)."""
    check_source(config)
    parameters = count_parameters(config.source.model).total
    planned = default_resources(config)
    return dataclasses.replace(planned, mem_mb=max(planned.mem_mb, round_up(1500 + 16 * parameters / 2**20, 500)))


KIND = Kind(QuantConfig, run, resources)
