"""The quant kind: post-training quantization of a trained model (tradeoffs.quant) scored against its full-precision
self (tradeoffs.evaluate). Base model x method x spec (x injected outlier magnitude) -> one result.

The source train experiment's checkpoint (the planned input) is read, outliers are optionally injected without
changing its function, a copy is kept as the full-precision reference, the model is quantized in place
(calibrated on windows of the calibration split) and both are scored on the first `eval_tokens` tokens of the
evaluation split under a named protocol. Calibration and evaluation tokens are checked to be disjoint in the
corpus's coordinates (the splits are contiguous: train | validation | test).

Metrics (labelled by the protocol where they come from a score): `log_likelihood`, `tokens`, `bytes`, `loss`,
`perplexity`, `bits_per_byte` and their `reference_*` twins; `kl` (KL(full precision || quantized) per token),
`kl_sum`, `top1_agreement`, `loss_change` (nats); `bits_per_weight` (quantized layers, scales included),
`memory_bytes` (quantized layers at their bits, the rest at 16 bits), `reference_memory_bytes` (all at 16 bits),
`quantized_layers`, `calibration_tokens`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field

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
    DEFAULT_CLIP_RATIOS,
    GPTQ,
    METHODS,
    MethodConfig,
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
LLM_INT8_FORMAT = "int8"  # LLM.int8()'s implied vector-wise INT8, weights and activations


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


@dataclass
class GPTQOptions:
    """GPTQ's settings (tradeoffs.quant.GPTQ): method gptq, or the weights of smoothquant/rotation with
    `method.gptq_weights`."""

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = False
    group_scales: str = "auto"


@dataclass
class SmoothQuantOptions:
    """SmoothQuant's migration strength and the Linears smoothed (empty: every Linear a norm feeds)."""

    alpha: float = 0.5
    layers: list[str] = field(default_factory=list)


@dataclass
class RotationOptions:
    """The QuaRot-style rotation's Hadamard block (0: the formats' block size, else the largest power of two
    dividing d_model), online rotations, sign seed, per-head K/V rotations when the spec quantizes the KV cache."""

    hadamard_size: int = 0
    online: bool = True
    signs_seed: int = 0
    kv_rotation: bool = True


@dataclass
class LLMInt8Options:
    """LLM.int8()'s outlier threshold, the 16-bit dtype of the outlier columns and which weights they use."""

    threshold: float = 6.0
    outlier_dtype: str = "fp16"
    outlier_weights: str = "16bit"


@dataclass
class SearchOptions:
    """The format search's candidates (empty: every exponent/mantissa split of the spec's weight width), clipping
    ratios, choice units (`layer` or `channel`) and objective (`weight` or `output` MSE): tradeoffs.quant's
    FormatSearch."""

    elements: list[str] = field(default_factory=list)
    clip_ratios: list[float] = field(default_factory=lambda: list(DEFAULT_CLIP_RATIOS))
    element_per: str = "layer"
    clip_per: str = "channel"
    objective: str = "weight"


@dataclass
class MethodOptions:
    """A method of tradeoffs.quant by name with its spec and options; only the named method's section is read."""

    name: str = "rtn"
    spec: SpecOptions = field(default_factory=SpecOptions)
    gptq_weights: bool = False  # smoothquant / rotation: GPTQ (method.gptq) instead of round-to-nearest
    gptq: GPTQOptions = field(default_factory=GPTQOptions)
    smoothquant: SmoothQuantOptions = field(default_factory=SmoothQuantOptions)
    rotation: RotationOptions = field(default_factory=RotationOptions)
    llm_int8: LLMInt8Options = field(default_factory=LLMInt8Options)
    search: SearchOptions = field(default_factory=SearchOptions)

    def build(self) -> MethodConfig:
        """The library's method config, validated (ConfigError naming the key and the valid choices)."""
        check_choice("method.name", self.name, METHODS)
        if self.name == "llm_int8":
            return _prefixed("method.", method_config, "llm_int8", **_values(self.llm_int8), lm_head=self.spec.lm_head)
        gptq = GPTQ(**_values(self.gptq)) if self.name == "gptq" or self.gptq_weights else None
        values: dict = {"spec": self.spec.build()}
        if self.name == "gptq":
            values["gptq"] = gptq
        elif self.name == "smoothquant":
            values.update(alpha=self.smoothquant.alpha, layers=tuple(self.smoothquant.layers), gptq=gptq)
        elif self.name == "rotation":
            values.update(**_values(self.rotation), gptq=gptq)
        elif self.name == "search":
            values["search"] = _values(self.search)
        return _prefixed("method.", method_config, self.name, **values)


def _values(options: object) -> dict:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


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
    method: MethodOptions = field(default_factory=MethodOptions)
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
        if self.method.name == "llm_int8":
            self._pin_llm_int8_spec()
        method = self.method.build()
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

    def _pin_llm_int8_spec(self) -> None:
        """LLM.int8() implies its spec (vector-wise INT8): any other spec is refused, the implied one recorded."""
        spec = self.method.spec
        given = {key: getattr(spec, key) for key in ("weight", "activation") if getattr(spec, key)}
        if spec.name != "W8A8" or set(given.values()) - {LLM_INT8_FORMAT} or spec.weight_granularity != "format":
            raise ConfigError(
                f"method.spec: method llm_int8 implies vector-wise INT8 weights and activations; got spec "
                f"{spec.name} {given or ''} weight_granularity={spec.weight_granularity}. Valid choices: "
                f"method.spec.name=W8A8 with weight/activation '' or {LLM_INT8_FORMAT}, weight_granularity=format"
            )
        spec.weight = spec.activation = LLM_INT8_FORMAT

    @property
    def context_length(self) -> int:
        return self.source.model.context_length

    @property
    def sample_length(self) -> int:
        return self.calibration_length or self.context_length


def check_source(config: QuantConfig) -> MethodConfig:
    """Check the method against the source's architecture (group sizes dividing the input features, SmoothQuant's
    layers fed by a norm, rotation's Hadamard size) on a weightless copy of it, before any checkpoint is read;
    the planner's sizer runs it too, once the source is known."""
    method = config.method.build()
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


def _data(config: QuantConfig, method: MethodConfig, dataset: Dataset) -> tuple[torch.Tensor | None, torch.Tensor]:
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
