"""QuaRot-style Hadamard rotation of a GPT's residual stream, folded into the weights: the method (RotationConfig and
its handler: rotate, then the spec's weights by round-to-nearest or GPTQ and its activations per forward) and the
transform.

1. Every norm's gain (and bias) is folded into the Linears reading it, leaving unit norms.
2. LayerNorm models get a mean-free residual: the embeddings and the residual writers (attention and MLP
   output projections) are projected onto the zero-mean subspace, which LayerNorm cannot see, after which
   LayerNorm equals RMSNorm and is replaced by it.
3. The residual is rotated by an orthogonal matrix Q (block-diagonal randomized Hadamard): embeddings
   E <- E Q, readers W <- W Q, writers W <- Q^T W (and biases). RMSNorm commutes with Q, so the function is
   unchanged.
4. KV cache (optional): per head, queries, keys and values are rotated by a Hadamard matrix R of the head
   dimension, folded into the qkv rows (q R, k R, v R; the model has learned absolute positions, no RoPE,
   so q.k is unchanged) and the value rotation undone in the attention output's columns (W <- W R per head).
   The KV cache is quantized on the rotated K and V.
5. Online: the inputs of the writers (attention output, MLP hidden), which no fold reaches, are rotated at
   run time by a block Hadamard H, their weights by W <- W H. Under the value rotation the attention
   output's online matrix is R^T H (blocks of the larger of the two sizes), so its input is quantized as
   without it.

Supported: tradeoffs.models.GPT (untied head, or a tied head under a unit final-norm gain).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_positive
from tradeoffs.formats import FormatSpec, hadamard_matrix, is_power_of_two
from tradeoffs.quant.api import QuantizeResult, register_quantize_handler
from tradeoffs.quant.gptq import GPTQ, check_grid, quantize_weights
from tradeoffs.quant.layers import make_quantized
from tradeoffs.quant.spec import QuantSpec, resolve_spec

GPT_LAYOUT = ("wte", "wpe", "blocks", "ln_f", "lm_head")  # tradeoffs.models.GPT's modules the folds reach


@dataclass(frozen=True)
class RotationConfig:
    """QuaRot-style Hadamard rotation: the residual stream rotated by an orthogonal (randomized) Hadamard
    matrix folded into the weights (norm gains folded into the next Linears, LayerNorm turned into RMSNorm on
    a mean-free residual), and an online rotation of the inputs of the Linears whose inputs no fold reaches
    (attention output and MLP down projections). `hadamard_size` 0: the format's block size for MX/NV
    formats (block-wise Hadamard), else the largest power of two dividing the dimension. `kv_rotation`, when
    the spec quantizes the KV cache: queries, keys and values rotated per head by a Hadamard matrix of the
    head dimension (folded into the qkv projection, its inverse into the attention output), so the cached
    K and V are quantized rotated. `gptq`: GPTQ weights (QuaRot-GPTQ) instead of round-to-nearest."""

    spec: QuantSpec | str = "W4A4"
    hadamard_size: int = 0
    online: bool = True
    signs_seed: int | None = 0
    gptq: GPTQ | None = None
    kv_rotation: bool = True

    def __post_init__(self) -> None:
        resolve_spec(self)
        check_positive("rotation.hadamard_size", self.hadamard_size, allow_zero=True)
        if self.hadamard_size and not is_power_of_two(self.hadamard_size):
            raise ConfigError(f"rotation.hadamard_size must be 0 or a power of two, got {self.hadamard_size}")
        if self.gptq is not None:
            check_grid(self.spec, self.gptq)

    @property
    def needs_calibration(self) -> bool:
        return self.gptq is not None


def hadamard_size(dimension: int, requested: int, formats: list[FormatSpec]) -> int:
    """The Hadamard block for a dimension: `requested`, else the block size of an MX/NV (block) format,
    else the largest power of two dividing the dimension. ConfigError if it does not divide it."""
    size = requested
    if not size:
        blocks = [f.block_size for f in formats if f.granularity == "block" and f.scale_format != "fp32"]
        size = min(blocks) if blocks else dimension & -dimension
    if dimension % size or not is_power_of_two(size):
        raise ConfigError(f"rotation.hadamard_size={size} must be a power of two dividing the dimension {dimension}")
    return size


def kv_head_dim(model: nn.Module) -> int:
    """The head dimension of a GPT's attention, the size of the per-head K/V Hadamard rotation; ConfigError
    unless it is a power of two."""
    head_dim = model.blocks[0].attn.head_dim
    if not is_power_of_two(head_dim):
        raise ConfigError(
            f"rotation.kv_rotation: the per-head Hadamard rotation of the KV cache needs a power-of-two head "
            f"dimension (d_model / n_head), got {head_dim}. Valid choices: kv_rotation=false, or n_head giving a "
            "head dimension in 1, 2, 4, 8, 16, 32, 64, 128, ..."
        )
    return head_dim


def block_rotation(dimension: int, size: int, signs_seed: int | None) -> Tensor:
    """The (dimension x dimension) block-diagonal randomized Hadamard matrix with blocks of `size`."""
    block = hadamard_matrix(size, signs_seed=signs_seed, dtype=torch.float64)
    return _repeat(block, dimension // size)


def _repeat(block: Tensor, count: int) -> Tensor:
    return torch.block_diag(*([block] * count))


def is_gpt(model: nn.Module) -> bool:
    """Whether the model has the layout of tradeoffs.models.GPT."""
    return all(hasattr(model, name) for name in GPT_LAYOUT)


def _fold_norm(norm: nn.Module, readers: list[nn.Linear]) -> None:
    """Fold the norm's gain and bias into the readers: W <- W diag(g), b <- b + W beta."""
    gain = norm.weight.detach().double()
    beta = getattr(norm, "bias", None)
    for linear in readers:
        weight = linear.weight.detach().double()
        if beta is not None:
            shift = weight @ beta.detach().double()
            if linear.bias is None:
                linear.bias = nn.Parameter(shift.to(linear.weight.dtype))
            else:
                linear.bias.copy_((linear.bias.double() + shift).to(linear.bias.dtype))
        linear.weight.copy_((weight * gain).to(linear.weight.dtype))


def _rms_norm(norm: nn.Module, width: int) -> nn.RMSNorm:
    eps = norm.eps if getattr(norm, "eps", None) is not None else 1e-5
    return nn.RMSNorm(width, eps=eps, device=norm.weight.device, dtype=norm.weight.dtype)


def _transform_rows(linear: nn.Linear, left: Tensor) -> None:
    """W <- left W, b <- left b (a transform of the output)."""
    linear.weight.copy_((left @ linear.weight.double()).to(linear.weight.dtype))
    if linear.bias is not None:
        linear.bias.copy_((left @ linear.bias.double()).to(linear.bias.dtype))


def _transform_columns(linear: nn.Linear, right: Tensor) -> None:
    """W <- W right (a transform of the input)."""
    linear.weight.copy_((linear.weight.double() @ right).to(linear.weight.dtype))


def _rotate_heads(attention: nn.Module, rotation: Tensor) -> None:
    """Rotate every query, key and value head of a CausalSelfAttention by `rotation` (head_dim x head_dim),
    undoing the value rotation in the output projection's input columns."""
    heads = attention.n_head + 2 * attention.n_kv_head
    _transform_rows(attention.qkv, _repeat(rotation.T, heads))
    _transform_columns(attention.proj, _repeat(rotation, attention.n_head))


@torch.no_grad()
def rotate_gpt(
    model: nn.Module,
    size: int,
    signs_seed: int | None,
    online: bool,
    online_formats: list[FormatSpec],
    kv_rotation: bool = False,
) -> dict[str, Tensor]:
    """Rotate a tradeoffs.models.GPT in place (module docstring), per head too with `kv_rotation`; returns
    the online rotation (s x s, in the weight's dtype) per Linear name, to apply to its input at run time."""
    if not is_gpt(model):
        raise ConfigError(f"rotation: supported for tradeoffs.models.GPT only, got {type(model).__name__}")
    width = model.wte.weight.shape[1]
    tied = model.lm_head.weight is model.wte.weight
    if tied and not torch.all(model.ln_f.weight == 1):
        raise ConfigError("rotation: a tied lm_head under a trained final-norm gain cannot be folded; untie it")
    layernorm = isinstance(model.ln_f, nn.LayerNorm)
    pairs = [(block, "ln_1", [block.attn.qkv]) for block in model.blocks]
    pairs += [(block, "ln_2", [block.mlp.up]) for block in model.blocks]
    pairs.append((model, "ln_f", [] if tied else [model.lm_head]))
    for owner, name, readers in pairs:
        norm = getattr(owner, name)
        _fold_norm(norm, readers)
        setattr(owner, name, _rms_norm(norm, width))
    writers = [m for block in model.blocks for m in (block.attn.proj, block.mlp.down)]
    q = block_rotation(width, size, signs_seed)
    if layernorm:
        center = torch.eye(width, dtype=torch.float64) - 1.0 / width
        q = center @ q  # project onto the zero-mean subspace, then rotate
    embeddings = [model.wte, model.wpe]
    for embedding in embeddings:
        embedding.weight.copy_((embedding.weight.double() @ q).to(embedding.weight.dtype))
    for writer in writers:
        _transform_rows(writer, q.T)
    q_read = block_rotation(width, size, signs_seed)
    for _owner, _name, readers in pairs:
        for reader in readers:
            _transform_columns(reader, q_read)
    head_rotation = None
    if kv_rotation:
        head_rotation = hadamard_matrix(kv_head_dim(model), signs_seed=signs_seed, dtype=torch.float64)
        for block in model.blocks:
            _rotate_heads(block.attn, head_rotation)
    rotations: dict[str, Tensor] = {}
    if online:
        names = {id(m): n for n, m in model.named_modules()}
        value_readers = {id(block.attn.proj) for block in model.blocks}
        for writer in writers:
            block_size = hadamard_size(writer.in_features, 0, online_formats)
            h = hadamard_matrix(block_size, dtype=torch.float64)
            if head_rotation is not None and id(writer) in value_readers:
                span = max(block_size, len(head_rotation))
                h = _repeat(head_rotation.T, span // len(head_rotation)) @ _repeat(h, span // block_size)
            _transform_columns(writer, _repeat(h, writer.in_features // len(h)))
            rotations[names[id(writer)]] = h.to(writer.weight.dtype)
    return rotations


def _formats(spec: QuantSpec) -> list[FormatSpec]:
    return [f for f in (spec.weight_format, spec.activation_format) if f is not None]


def _check(model: nn.Module, config: RotationConfig) -> None:
    if not is_gpt(model):
        missing = [name for name in GPT_LAYOUT if not hasattr(model, name)]
        raise ConfigError(
            f"rotation: folds the rotation into the layout of tradeoffs.models.GPT ({', '.join(GPT_LAYOUT)}: "
            f"embeddings, decoder blocks, final norm, output head); {type(model).__name__} has no "
            f"{', '.join(missing)}. Methods that round each Linear on its own (rtn, llm_int8) need no layout"
        )
    hadamard_size(model.wte.weight.shape[1], config.hadamard_size, _formats(config.spec))
    if config.kv_rotation and config.spec.kv_cache_format is not None:
        kv_head_dim(model)


@register_quantize_handler(RotationConfig, check=_check)
def _quantize(
    model: nn.Module,
    config: RotationConfig,
    targets: dict[str, nn.Linear],
    batches: list[Tensor],
    result: QuantizeResult,
) -> None:
    spec, formats = config.spec, _formats(config.spec)
    size = hadamard_size(model.wte.weight.shape[1], config.hadamard_size, formats)
    kv_rotation = config.kv_rotation and spec.kv_cache_format is not None
    rotations = rotate_gpt(model, size, config.signs_seed, config.online, formats, kv_rotation)
    for name, linear in targets.items():
        make_quantized(linear, spec.activation_format, spec.weight_format, rotations.get(name))
    quantize_weights(model, targets, spec.weight_format, config.gptq, batches)
