"""Training configuration: the precision recipe (conf/recipe/) and the run (model, data, recipe, schedule,
evaluation, checkpoints), plain dataclasses a user builds in Python: `train(TrainConfig(model=..., steps=300))`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tradeoffs.data.dataset import DataConfig
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.formats.rotation import is_power_of_two
from tradeoffs.formats.spec import FormatSpec
from tradeoffs.hardware import HardwareConfig
from tradeoffs.identity import descriptive
from tradeoffs.models.gpt import ModelConfig

# Training tokens below which compiling the quantizers does not pay, from eager and compiled runs measured side
# by side at the quick suite's size (gpt-60k, 16 x 128 tokens per step, one thread, a loaded 2-core machine):
# fp8 compiled 178 s in its first step and then stepped no faster than eager (0.51 s against 0.50 s); mxfp8
# compiled 124 s and then saved 0.30 s a step (0.59 s against 0.90 s), paying back after about 410 steps (0.8M
# tokens); nvfp4 (gpt-200k, 2 threads, a quiet machine, after its grouped compiled quantizers) compiled 147 s and
# then saved 0.21 s a step (0.13 s against 0.35 s), paying back after about 700 steps (1.4M tokens;
# conf/recipe/nvfp4.yaml sets its threshold). The default: about 1000 steps of 2048 tokens, beyond every
# break-even measured (docs/training.md).
COMPILE_BREAK_EVEN_TOKENS = 2_000_000


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
    # quantization starts at this fraction of the steps (QAT after FP training); 1: none during training, the
    # final model evaluated quantized (post-training quantization, round-to-nearest with the same fake_quant)
    quant_start_fraction: float = 0.0
    optimizer_state_format: FormatSpec = field(default_factory=FormatSpec)  # Adam moments (COAT: FP8 per group)
    state_range_expansion: bool = False  # COAT's dynamic range expansion of the moments before quantizing
    # runs of at least this many training tokens compile the quantizers (bit-identical, so not hashed):
    # where compiling pays back its cold start, measured per recipe (COMPILE_BREAK_EVEN_TOKENS)
    compile_min_tokens: int = descriptive(COMPILE_BREAK_EVEN_TOKENS)

    def __post_init__(self) -> None:
        check_choice("recipe.compute_dtype", self.compute_dtype, ("fp32", "bf16", "fp16"))
        check_positive("recipe.keep_last_layers", self.keep_last_layers, allow_zero=True)
        check_positive("recipe.compile_min_tokens", self.compile_min_tokens, allow_zero=True)
        if not 0 <= self.quant_start_fraction <= 1:
            raise ConfigError(
                f"recipe.quant_start_fraction must be in [0, 1] (1: quantize the final model only), "
                f"got {self.quant_start_fraction}"
            )
        if self.quant_start_fraction > 0 and not self.emulated:
            raise ConfigError(
                f"recipe.quant_start_fraction={self.quant_start_fraction} needs a quantized weight, activation or "
                f"gradient format; recipe '{self.name}' quantizes no Linear"
            )
        if self.hadamard_size < 2 or not is_power_of_two(self.hadamard_size):
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

    def quant_start_step(self, steps: int) -> int:
        """The first of `steps` training steps run with the recipe's Linear formats: ceil(quant_start_fraction x
        steps), so `steps` itself (none) for a fraction of 1, where only the final model is quantized."""
        return math.ceil(self.quant_start_fraction * steps)

    @property
    def emulated(self) -> bool:
        """True when any Linear role is fake-quantized (arithmetic emulated in FP32)."""
        return bool(set(self.formats()) - {"optimizer_state"})


@dataclass
class TrainConfig:
    """Train a model on a corpus with a precision recipe (the train kind): AdamW, warmup and cosine decay,
    gradient clipping, periodic evaluation and checkpoints; a NaN/inf loss or a spike ends it as diverged.
    The train experiment kind's schema extends it with the pipeline's fields (tradeoffs.kinds.train)."""

    seed: int = 0
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
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
    compile_quant: bool = descriptive(True)  # emulated formats may go through torch.compile: bit-identical, not hashed

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "eval_interval", "eval_windows", "log_interval", "devices"):
            check_positive(key, getattr(self, key))
        for key in ("warmup_steps", "weight_decay", "grad_clip", "checkpoint_interval"):
            check_positive(key, getattr(self, key), allow_zero=True)
        check_positive("lr", self.lr)
        check_positive("seed", self.seed, allow_zero=True)
        if self.warmup_steps > self.steps:
            raise ConfigError(f"warmup_steps: must be <= steps={self.steps}, got {self.warmup_steps}")
        if not 0 <= self.min_lr_fraction <= 1:
            raise ConfigError(f"min_lr_fraction: must be in [0, 1] (a fraction of lr), got {self.min_lr_fraction}")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be in [0, 1) (an Adam moment decay), got {getattr(self, key)}")
        self._check_split_sizes()
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

    def _check_split_sizes(self) -> None:
        """With byte tokens and data.max_bytes set, each split's size is known before the corpus is read: the
        train and validation splits must hold at least one window of context_length + 1 tokens."""
        data, need = self.data, self.model.context_length + 1
        if data.tokenizer != "bytes" or not data.max_bytes or data.split_members:
            return
        validation, test = (
            int(data.max_bytes * fraction) for fraction in (data.validation_fraction, data.test_fraction)
        )
        sizes = {"train": data.max_bytes - validation - test, "validation": validation}
        for split, size in sizes.items():
            if size < need:
                key = "data.validation_fraction" if split == "validation" else "data.max_bytes"
                raise ConfigError(
                    f"{key}: data.max_bytes={data.max_bytes} with data.validation_fraction={data.validation_fraction} "
                    f"leaves the {split} split {size} tokens, fewer than model.context_length + 1 = {need}; "
                    "raise data.max_bytes (0: the whole corpus) or the split's fraction"
                )
