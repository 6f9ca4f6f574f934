"""Typed configuration: the schema of every config group and experiment kind, composition through Hydra,
validation with actionable messages, and the hash that names an experiment.

Each experiment kind has a primary config conf/<kind>.yaml whose defaults list starts with the kind's
schema (registered here in Hydra's ConfigStore as "<kind>_schema"), so every group option is merged into
a typed node: an unknown key, a wrong type or an unknown option fails at composition, and impossible
values fail in the dataclasses' __post_init__ when the config is turned into objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.formats.spec import FormatSpec
from tradeoffs.paths import conf_dir

# Fields marked so describe a value without changing any result (names, citations): the hash skips them.
DESCRIPTIVE = {"affects_result": False}


def descriptive(default: Any = "") -> Any:
    return field(default=default, metadata=DESCRIPTIVE)


# ----------------------------------------------------------------------------------------------- groups
# Compute dtypes a hardware peak is quoted for (TFLOP/s; TOP/s for int8).
PEAK_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")


@dataclass
class HardwareConfig:
    """Where an experiment runs, and the peaks its throughput is compared with (conf/hardware/)."""

    name: str = descriptive("cpu")
    device: str = "cpu"
    threads: int = 0  # torch intra-op threads; 0 takes the job's allotment (Snakemake threads)
    peak_tflops: dict[str, float] = field(default_factory=dict)  # dense datasheet peaks per dtype
    memory_bandwidth_gbs: float = 0.0
    unsupported: dict[str, str] = field(default_factory=dict)  # dtype -> why this hardware cannot run it natively
    source: str = descriptive()

    def __post_init__(self) -> None:
        check_choice("hardware.device", self.device, ("cpu", "cuda"))
        check_positive("hardware.threads", self.threads, allow_zero=True)
        check_positive("hardware.memory_bandwidth_gbs", self.memory_bandwidth_gbs, allow_zero=True)
        for dtype, peak in self.peak_tflops.items():
            check_choice("hardware.peak_tflops key", dtype, PEAK_DTYPES)
            check_positive(f"hardware.peak_tflops.{dtype}", peak)
        for dtype in self.unsupported:
            check_choice("hardware.unsupported key", dtype, PEAK_DTYPES)


DISTRIBUTIONS = ("gaussian", "laplace", "student_t", "spikes", "channel_outliers")


@dataclass
class DistributionConfig:
    """A synthetic value distribution for the numerics studies (conf/distribution/)."""

    name: str = descriptive("gaussian")
    family: str = "gaussian"
    dof: float = 0.0  # student_t degrees of freedom
    spike_fraction: float = 0.0  # spikes: share of values replaced by large spikes
    spike_scale: float = 0.0  # spikes: spike magnitude in standard deviations
    outlier_channels: int = 0  # channel_outliers: number of channels (columns) scaled up
    outlier_scale: float = 0.0  # channel_outliers: their scale factor
    row_scale_octaves: float = 0.0  # each row (token) scaled by 2^U(0, octaves): magnitudes vary like real data

    def __post_init__(self) -> None:
        check_choice("distribution.family", self.family, DISTRIBUTIONS)
        if self.family == "student_t":
            check_positive("distribution.dof", self.dof)
        if self.family == "spikes":
            if not 0 < self.spike_fraction < 1:
                raise ConfigError(f"distribution.spike_fraction must be in (0, 1), got {self.spike_fraction}")
            check_positive("distribution.spike_scale", self.spike_scale)
        if self.family == "channel_outliers":
            check_positive("distribution.outlier_channels", self.outlier_channels)
            check_positive("distribution.outlier_scale", self.outlier_scale)
        check_positive("distribution.row_scale_octaves", self.row_scale_octaves, allow_zero=True)


@dataclass
class ModelConfig:
    """A model (conf/model/): a GPT of the project's own family (tradeoffs.models.gpt), or a Hugging Face
    causal LM loaded from a local directory (family=hf, path=...; the architecture fields are then unused)."""

    name: str = descriptive("gpt-tiny")
    family: str = "gpt"
    path: str = ""  # family=hf: a local directory written by save_pretrained
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int = 4  # = n_head: multi-head; 1 < n_kv_head < n_head: grouped-query; 1: multi-query
    d_ff: int = 256
    context_length: int = 128
    vocab_size: int = 256
    norm: str = "layernorm"
    bias: bool = False  # biases in every Linear and LayerNorm
    tie_embeddings: bool = False  # lm_head shares the token embedding's weight
    dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        check_choice("model.family", self.family, ("gpt", "hf"))
        if self.family == "hf" and not self.path:
            raise ConfigError("model: family=hf needs model.path, a local directory written by save_pretrained")
        for key in ("d_model", "n_layer", "n_head", "n_kv_head", "d_ff", "context_length", "vocab_size"):
            check_positive(f"model.{key}", getattr(self, key))
        check_choice("model.norm", self.norm, ("layernorm", "rmsnorm"))
        check_positive("model.init_std", self.init_std)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.d_model % self.n_head:
            raise ConfigError(f"model.n_head={self.n_head} does not divide model.d_model={self.d_model}")
        if self.n_head % self.n_kv_head:
            raise ConfigError(
                f"model.n_kv_head={self.n_kv_head} does not divide model.n_head={self.n_head} "
                "(n_kv_head = n_head for MHA, a divisor for GQA, 1 for MQA)"
            )


@dataclass
class DataConfig:
    """A text corpus (conf/data/): embedded (offline) or downloaded by URL with a checksum (tradeoffs.data).

    The corpus is one byte stream split contiguously into train | validation | test by the fractions, unless
    `split_members` names an archive's own split files. The sha256 pins the downloaded file, so the URL (a
    mirror) does not enter the experiment hash; an embedded corpus's hash is computed and recorded at run time.
    """

    name: str = descriptive("stdlib")
    source: str = "embedded"
    url: str = descriptive("")
    sha256: str = ""  # of the downloaded file (url); optional pin for an embedded corpus
    member: str = ""  # the file to read inside a .zip archive ("" = its only file)
    split_members: dict[str, str] = field(default_factory=dict)  # train/validation/test -> archive member
    max_bytes: int = 0  # read at most this many bytes of the corpus (of each member with split_members); 0 = all
    tokenizer: str = "bytes"
    vocab_size: int = 256
    validation_fraction: float = 0.05
    test_fraction: float = 0.05

    def __post_init__(self) -> None:
        check_choice("data.source", self.source, ("embedded", "url"))
        check_choice("data.tokenizer", self.tokenizer, ("bytes", "bpe"))
        if self.source == "url" and not (self.url and re.fullmatch(r"[0-9a-f]{64}", self.sha256)):
            raise ConfigError("data: source=url needs data.url and a 64-hex-digit data.sha256")
        if self.sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ConfigError(f"data.sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.tokenizer == "bytes" and self.vocab_size != 256:
            raise ConfigError(f"data.vocab_size must be 256 with tokenizer=bytes, got {self.vocab_size}")
        if self.tokenizer == "bpe" and not 256 < self.vocab_size <= 65536:
            raise ConfigError(f"data.vocab_size must be in (256, 65536] with tokenizer=bpe, got {self.vocab_size}")
        check_positive("data.max_bytes", self.max_bytes, allow_zero=True)
        for split in self.split_members:
            check_choice("data.split_members key", split, ("train", "validation", "test"))
        if self.split_members and "train" not in self.split_members:
            raise ConfigError("data.split_members needs a 'train' member")
        if not (self.validation_fraction >= 0 and self.test_fraction >= 0) or not (
            self.validation_fraction + self.test_fraction < 1
        ):
            raise ConfigError("data.validation_fraction and data.test_fraction must be >= 0 with a sum below 1")


@dataclass
class RecipeConfig:
    """A training precision recipe (conf/recipe/): autocast dtype, and the formats of every Linear's forward
    weights and activations and backward gradients (emulated by fake quantization with a straight-through
    estimator; FP32 elements mean "not quantized"), rotations, layers kept in high precision, QAT start and
    optimizer-state precision."""

    name: str = descriptive("fp32")
    compute_dtype: str = "fp32"  # autocast dtype of the whole model: fp32 | bf16 | fp16
    loss_scaling: bool = False  # dynamic loss scaling (torch.amp.GradScaler), for fp16
    weight_format: FormatSpec = field(default_factory=FormatSpec)
    activation_format: FormatSpec = field(default_factory=FormatSpec)
    gradient_format: FormatSpec = field(default_factory=FormatSpec)
    hadamard: bool = False  # forward: rotate x and W along the contraction axis before quantizing (Quartet)
    hadamard_size: int = 32
    wgrad_hadamard: bool = False  # backward: random-sign Hadamard on the weight-gradient GEMM's inputs (NVFP4)
    keep_last_layers: int = 0  # the last blocks stay in high precision (NVFP4 recipe)
    quantize_lm_head: bool = False
    quant_start_fraction: float = 0.0  # quantization starts at this fraction of the steps (QAT after FP training)
    optimizer_state_format: FormatSpec = field(default_factory=FormatSpec)  # Adam moments (COAT: FP8 per group)
    state_range_expansion: bool = False  # COAT's dynamic range expansion of the moments before quantizing

    def __post_init__(self) -> None:
        check_choice("recipe.compute_dtype", self.compute_dtype, ("fp32", "bf16", "fp16"))
        check_positive("recipe.keep_last_layers", self.keep_last_layers, allow_zero=True)
        if not 0 <= self.quant_start_fraction < 1:
            raise ConfigError(f"recipe.quant_start_fraction must be in [0, 1), got {self.quant_start_fraction}")
        if self.hadamard_size < 2 or self.hadamard_size & (self.hadamard_size - 1):
            raise ConfigError(f"recipe.hadamard_size must be a power of two >= 2, got {self.hadamard_size}")
        if self.loss_scaling and self.compute_dtype != "fp16":
            raise ConfigError("recipe.loss_scaling applies to compute_dtype=fp16 only")
        if self.state_range_expansion and self.optimizer_state_format.is_identity:
            raise ConfigError("recipe.state_range_expansion needs a quantized optimizer_state_format")

    def formats(self) -> dict[str, FormatSpec]:
        """The quantized tensor roles of the recipe (role -> format), full-precision roles left out."""
        roles = {
            "weight": self.weight_format,
            "activation": self.activation_format,
            "gradient": self.gradient_format,
            "optimizer_state": self.optimizer_state_format,
        }
        return {role: spec for role, spec in roles.items() if not spec.is_identity}

    @property
    def emulated(self) -> bool:
        """True when any Linear role is fake-quantized (arithmetic emulated in FP32)."""
        return bool(set(self.formats()) - {"optimizer_state"})


@dataclass
class MethodConfig:
    """A post-training quantization method (conf/method/)."""

    name: str = descriptive("rtn")
    algorithm: str = "rtn"
    weight_format: str = "int4"
    activation_format: str = ""

    def __post_init__(self) -> None:
        check_choice("method.algorithm", self.algorithm, ("rtn", "gptq", "smoothquant", "llm_int8"))


@dataclass
class BenchConfig:
    """Timing rules of the benchmark engine (conf/bench/): warm-up, minimum count and time, a time cap."""

    name: str = descriptive("default")
    warmup: int = 3  # warm-up calls after the cold (first) call ...
    warmup_time_s: float = 0.05  # ... and at least this long
    min_runs: int = 10
    min_time_s: float = 0.2
    max_time_s: float = 10.0
    repeats: int = 3  # fresh-process repeats for headline numbers
    l2_flush: bool = False

    def __post_init__(self) -> None:
        check_positive("bench.warmup", self.warmup, allow_zero=True)
        check_positive("bench.warmup_time_s", self.warmup_time_s, allow_zero=True)
        check_positive("bench.min_runs", self.min_runs)
        check_positive("bench.min_time_s", self.min_time_s)
        check_positive("bench.repeats", self.repeats)
        if self.max_time_s < self.min_time_s:
            raise ConfigError(f"bench.max_time_s ({self.max_time_s}) < bench.min_time_s ({self.min_time_s})")


# ------------------------------------------------------------------------------------- experiment kinds
@dataclass
class ExperimentConfig:
    """Fields shared by every experiment kind."""

    kind: str = ""
    study: str = descriptive()  # the suite entry that planned it (reports select rows by it); not hashed
    seed: int = 0
    hardware: HardwareConfig = field(default_factory=HardwareConfig)


ROTATIONS = ("none", "hadamard", "random_hadamard")


@dataclass
class NumericsConfig(ExperimentConfig):
    """Quantization error of a format on a synthetic distribution (the numerics kind)."""

    kind: str = "numerics"
    format: FormatSpec = field(default_factory=FormatSpec)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)
    rotation: str = "none"
    rotation_size: int = 32
    n_values: int = 2**20
    row_size: int = 4096

    def __post_init__(self) -> None:
        check_choice("rotation", self.rotation, ROTATIONS)
        check_positive("n_values", self.n_values)
        check_positive("row_size", self.row_size)
        if self.n_values % self.row_size:
            raise ConfigError(f"row_size={self.row_size} does not divide n_values={self.n_values}")
        if self.format.granularity == "block" and self.row_size % self.format.block_size:
            raise ConfigError(f"format.block_size={self.format.block_size} does not divide row_size={self.row_size}")
        if self.rotation != "none" and (
            self.rotation_size < 2
            or self.rotation_size & (self.rotation_size - 1)
            or self.row_size % self.rotation_size
        ):
            raise ConfigError(
                f"rotation_size={self.rotation_size} must be a power of two dividing row_size={self.row_size}"
            )


@dataclass
class CrossoverConfig(ExperimentConfig):
    """The INT-vs-FP paper's QSNR model for an INT/FP format pair over crest factors (the crossover kind)."""

    kind: str = "crossover"
    int_format: FormatSpec = field(default_factory=FormatSpec)
    fp_format: FormatSpec = field(default_factory=FormatSpec)
    kappa_min: float = 1.0
    kappa_max: float = 12.0
    points: int = 111

    def __post_init__(self) -> None:
        if self.int_format.element_format.kind != "int" or self.fp_format.element_format.kind != "float":
            raise ConfigError(
                f"crossover: int_format must have an integer element and fp_format a minifloat, got "
                f"'{self.int_format.element}' and '{self.fp_format.element}'"
            )
        check_positive("points", self.points)
        if not 1.0 <= self.kappa_min < self.kappa_max:
            raise ConfigError(f"crossover: need 1 <= kappa_min < kappa_max, got {self.kappa_min}, {self.kappa_max}")


@dataclass
class LMulConfig(ExperimentConfig):
    """Relative error of L-Mul and of floating-point multiplies on random operands (the lmul kind)."""

    kind: str = "lmul"
    mantissa_bits: list[int] = field(default_factory=lambda: [2, 3, 4, 5])
    float_formats: list[str] = field(default_factory=lambda: ["fp8_e4m3", "fp8_e5m2"])
    operands: str = "loguniform"
    n_values: int = 2**20

    def __post_init__(self) -> None:
        check_choice("operands", self.operands, ("loguniform", "gaussian"))
        check_positive("n_values", self.n_values)
        for bits in self.mantissa_bits:
            if not 1 <= bits <= 10:
                raise ConfigError(f"lmul: mantissa_bits must be within 1..10, got {bits}")
        for name in self.float_formats:
            if not re.fullmatch(r"(fp\d+_)?e\d+m\d+", name):
                raise ConfigError(f"lmul: float_formats takes minifloat element names like fp8_e4m3, got '{name}'")


@dataclass
class TrainConfig(ExperimentConfig):
    """Train a model on a corpus with a precision recipe (the train kind): AdamW, warmup and cosine decay,
    gradient clipping, periodic evaluation and checkpoints; a NaN/inf loss or a spike ends it as diverged."""

    kind: str = "train"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_fraction: float = 0.1  # cosine decay ends at lr * min_lr_fraction
    warmup_steps: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_interval: int = 50  # validation loss every k steps (and at the end)
    eval_windows: int = 64  # validation windows (of context_length tokens) per evaluation
    log_interval: int = 10  # training loss recorded every k steps
    checkpoint_interval: int = 0  # steps between checkpoints; 0: only at the end
    spike_factor: float = 5.0  # diverged when the loss exceeds spike_factor x its running minimum
    devices: int = 1  # >1: data-parallel processes (torchrun), the global batch split between them
    compile_quant: bool = descriptive(True)  # emulated formats through torch.compile: bit-identical, not hashed

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "eval_interval", "eval_windows", "log_interval", "devices"):
            check_positive(key, getattr(self, key))
        for key in ("warmup_steps", "weight_decay", "grad_clip", "checkpoint_interval"):
            check_positive(key, getattr(self, key), allow_zero=True)
        check_positive("lr", self.lr)
        if self.spike_factor <= 1:
            raise ConfigError(f"spike_factor must be > 1, got {self.spike_factor}")
        if self.batch_size % self.devices:
            raise ConfigError(f"devices={self.devices} must divide batch_size={self.batch_size}")
        tokens = self.batch_size // self.devices * self.model.context_length
        widths = {"model.d_model": self.model.d_model, "model.d_ff": self.model.d_ff, "tokens per batch": tokens}
        blocks = {
            f"recipe.{role}_format.block_size": spec.block_size
            for role, spec in self.recipe.formats().items()
            if spec.granularity == "block" and role != "optimizer_state"
        }
        if self.recipe.hadamard:
            blocks["recipe.hadamard_size"] = self.recipe.hadamard_size
        for block_key, block in blocks.items():
            for width_key, width in widths.items():
                if width % block:
                    raise ConfigError(
                        f"{block_key}={block} does not divide {width_key}={width}: pick a model "
                        "whose widths are multiples of the block (e.g. model=gpt-200k)"
                    )


@dataclass
class CaptureConfig(ExperimentConfig):
    """QSNR of a format on the tensors of a trained model (the capture kind): the weights, inputs
    (activations) and output gradients of every Linear, from one validation batch through the checkpoint of
    its `source` train experiment (set by the planner from the suite's source study)."""

    kind: str = "capture"
    source: TrainConfig = field(default_factory=TrainConfig)
    source_id: str = descriptive()  # the train experiment whose checkpoint is read (its config is `source`)
    format: FormatSpec = field(default_factory=FormatSpec)
    rotation: str = "none"  # none | hadamard: blockwise along the quantization axis before quantizing
    rotation_size: int = 32
    batch_size: int = 8

    def __post_init__(self) -> None:
        check_choice("rotation", self.rotation, ("none", "hadamard"))
        check_positive("batch_size", self.batch_size)
        if self.rotation_size < 2 or self.rotation_size & (self.rotation_size - 1):
            raise ConfigError(f"rotation_size must be a power of two >= 2, got {self.rotation_size}")


BENCHMARKS = ("gemm", "qdq", "copy", "inference")
INFERENCE_DTYPES = ("fp32", "bf16", "fp16")
GEMM_DTYPES = (
    "fp32",
    "tf32",
    "bf16",
    "fp16",
    "fp8_e4m3",
    "fp8_e5m2",
    "int8",
    "w8_dequant",
    "w8_fused",
    "w4_dequant",
    "w4_fused",
)


@dataclass
class BenchExperimentConfig(ExperimentConfig):
    """A hardware benchmark (the bench kind), timed by tradeoffs.bench.timing: GEMM throughput of a dtype over
    [M, K, N] shapes, a format's quantize-dequantize against a copy and torchao, a tensor copy, or greedy
    generation with a model (prefill and decode tokens/s, per-token latency)."""

    kind: str = "bench"
    benchmark: str = "gemm"
    bench: BenchConfig = field(default_factory=BenchConfig)
    dtype: str = "fp32"  # gemm: one of GEMM_DTYPES; inference: fp32 | bf16 | fp16
    shapes: list[list[int]] = field(default_factory=lambda: [[1024, 1024, 1024]])  # gemm: [M, K, N] each
    format: FormatSpec | None = None  # qdq: the format (conf/format/)
    log2_elements: int = 22  # qdq, copy: the fp32 input has 2^log2_elements values
    compare_torchao: bool = True  # qdq: time torchao's eager quantize-dequantize of the same format beside it
    compiled: bool = True  # qdq: also time fake_quant through torch.compile (preallocated output and allocating)
    model: ModelConfig | None = None  # inference: the model (conf/model/)
    batch_size: int = 1  # inference: sequences generated together
    prompt_length: int = 64  # inference: prompt tokens (prefill)
    new_tokens: int = 32  # inference: greedy tokens generated (the first from the prefill)
    repeat: int = 0  # index of this fresh-process repeat, < bench.repeats

    def __post_init__(self) -> None:
        check_choice("benchmark", self.benchmark, BENCHMARKS)
        check_choice("dtype", self.dtype, GEMM_DTYPES)
        for shape in self.shapes:
            if len(shape) != 3 or min(shape) < 1:
                raise ConfigError(f"shapes: each shape is [M, K, N] with positive sizes, got {shape}")
        if self.benchmark == "gemm" and not self.shapes:
            raise ConfigError("shapes: a gemm benchmark needs at least one [M, K, N]")
        if self.benchmark == "qdq" and self.format is None:
            raise ConfigError("format: a qdq benchmark needs a format, e.g. format=mxfp4 (names in conf/format/)")
        if not 10 <= self.log2_elements <= 32:
            raise ConfigError(f"log2_elements must be within 10..32, got {self.log2_elements}")
        if self.benchmark == "inference":
            check_choice("dtype (inference)", self.dtype, INFERENCE_DTYPES)
            if self.model is None:
                raise ConfigError("model: an inference benchmark needs a model, e.g. model=gpt-10m (conf/model/)")
            check_positive("batch_size", self.batch_size)
            check_positive("prompt_length", self.prompt_length)
            if self.new_tokens < 2:
                raise ConfigError(f"new_tokens must be >= 2 (one from the prefill, then decode), got {self.new_tokens}")
            if self.prompt_length + self.new_tokens > self.model.context_length:
                raise ConfigError(
                    f"prompt_length + new_tokens = {self.prompt_length + self.new_tokens} exceeds "
                    f"model.context_length={self.model.context_length}"
                )
        if not 0 <= self.repeat < self.bench.repeats:
            raise ConfigError(f"repeat={self.repeat} must be in [0, bench.repeats={self.bench.repeats})")


EXPERIMENT_SCHEMAS: dict[str, type[ExperimentConfig]] = {
    "numerics": NumericsConfig,
    "bench": BenchExperimentConfig,
    "crossover": CrossoverConfig,
    "lmul": LMulConfig,
    "train": TrainConfig,
    "capture": CaptureConfig,
}


# ------------------------------------------------------------------------------------------------ suites
@dataclass
class SweepConfig:
    """One study of a suite: a grid over `sweep` axes (group options or dotted keys) times the rows of
    `zip` (axes varied together, all lists of one length), with `fixed` overrides for all, minus the
    combinations matched by an `exclude` entry. `kind` defaults to the study's name in the suite. With a
    `source` study, every point runs once per matching source experiment, whose resolved config fills the
    kind's `source` field and whose result is the job's input."""

    kind: str = ""
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    source: str = ""  # a study (earlier in the suite) whose experiments this one reads, one run per source
    source_where: dict[str, Any] = field(default_factory=dict)  # dotted config keys the sources must match
    fixed: dict[str, Any] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SuiteConfig:
    """A suite (conf/suite/): the experiments one `snakemake` run plans."""

    name: str = ""
    description: str = ""
    experiments: dict[str, SweepConfig] = field(default_factory=dict)


# The schema each config group's options are validated against (tests check every file in conf/).
GROUP_SCHEMAS: dict[str, type] = {
    "format": FormatSpec,
    "distribution": DistributionConfig,
    "hardware": HardwareConfig,
    "model": ModelConfig,
    "data": DataConfig,
    "recipe": RecipeConfig,
    "method": MethodConfig,
    "bench": BenchConfig,
    "suite": SuiteConfig,
}


def register_schemas() -> None:
    """Register every kind's schema in Hydra's ConfigStore as `<kind>_schema` (idempotent). Hydra is imported
    here, not at module import, so that a job, which only validates a resolved config, never loads it."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for kind, schema in EXPERIMENT_SCHEMAS.items():
        store.store(name=f"{kind}_schema", node=schema)


# ------------------------------------------------------------------------------------- compose/validate
def _valid_keys_hint(error: BaseException) -> str:
    """'; valid keys: ...' for the typed node an unknown key was set on."""
    schemas = {cls.__name__: cls for cls in (*GROUP_SCHEMAS.values(), *EXPERIMENT_SCHEMAS.values())}
    node_type = getattr(error, "object_type", None)
    if node_type is None and (match := re.search(r"not in '(\w+)'", str(error))):
        node_type = schemas.get(match.group(1))
    if node_type is not None and is_dataclass(node_type):
        return f"; valid keys: {', '.join(f.name for f in fields(node_type))}"
    return ""


def _explain(context: str, error: BaseException) -> ConfigError:
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

    check_choice("experiment kind", kind, EXPERIMENT_SCHEMAS)
    try:
        with hydra_session():
            return hydra_compose(config_name=kind, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise _explain(kind, error) from None


def to_typed(cfg: DictConfig | dict, kind: str | None = None) -> ExperimentConfig:
    """Turn a composed (or JSON) config into its kind's dataclass, running every validation."""
    kind = kind or cfg["kind"]
    check_choice("experiment kind", kind, EXPERIMENT_SCHEMAS)
    schema = EXPERIMENT_SCHEMAS[kind]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise _explain(kind, error) from None


def load_experiment(kind: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Compose and validate one experiment config."""
    return to_typed(compose(kind, overrides), kind)


def as_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict of a config dataclass."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


def _result_relevant(config: Any) -> Any:
    """The config with descriptive fields dropped, as plain nested values."""
    if is_dataclass(config):
        return {
            f.name: _result_relevant(getattr(config, f.name))
            for f in fields(config)
            if f.metadata.get("affects_result", True)
        }
    if isinstance(config, dict):
        return {str(k): _result_relevant(v) for k, v in sorted(config.items())}
    if isinstance(config, (list, tuple)):
        return [_result_relevant(v) for v in config]
    return config


def config_hash(config: ExperimentConfig, length: int = 8) -> str:
    """Short sha256 of every value that affects the result (names and citations excluded)."""
    canonical = json.dumps(_result_relevant(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def load_suite(name: str) -> SuiteConfig:
    """Load and validate conf/suite/<name>.yaml."""
    path = conf_dir() / "suite" / f"{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (conf_dir() / "suite").glob("*.yaml"))
        raise ConfigError(f"unknown suite '{name}'; valid choices: {', '.join(choices)}")
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SuiteConfig), OmegaConf.load(path)))
    except OmegaConfBaseException as error:
        raise _explain(f"suite '{name}'", error) from None
    for study, sweep in suite.experiments.items():
        sweep.kind = sweep.kind or study
        check_choice(f"suite '{name}', study '{study}': experiment kind", sweep.kind, EXPERIMENT_SCHEMAS)
        lengths = {len(values) for values in sweep.zip.values()}
        if len(lengths) > 1:
            raise ConfigError(
                f"suite '{name}', study '{study}': zip axes need lists of one length, got {sorted(lengths)}"
            )
    return suite


__all__ = [
    "EXPERIMENT_SCHEMAS",
    "GROUP_SCHEMAS",
    "BenchConfig",
    "BenchExperimentConfig",
    "CaptureConfig",
    "CrossoverConfig",
    "DataConfig",
    "DistributionConfig",
    "ExperimentConfig",
    "HardwareConfig",
    "LMulConfig",
    "MethodConfig",
    "ModelConfig",
    "NumericsConfig",
    "RecipeConfig",
    "SuiteConfig",
    "SweepConfig",
    "TrainConfig",
    "as_dict",
    "compose",
    "config_hash",
    "load_experiment",
    "load_suite",
    "to_typed",
]
