"""QuaRot-style Hadamard rotation of a GPT's residual stream, folded into the weights.

1. Every norm's gain (and bias) is folded into the Linears reading it, leaving unit norms.
2. LayerNorm models get a mean-free residual: the embeddings and the residual writers (attention and MLP
   output projections) are projected onto the zero-mean subspace, which LayerNorm cannot see, after which
   LayerNorm equals RMSNorm and is replaced by it.
3. The residual is rotated by an orthogonal matrix Q (block-diagonal randomized Hadamard): embeddings
   E <- E Q, readers W <- W Q, writers W <- Q^T W (and biases). RMSNorm commutes with Q, so the function is
   unchanged.
4. Online: the inputs of the writers (attention output, MLP hidden), which no fold reaches, are rotated at
   run time by a block Hadamard H, their weights by W <- W H.

Supported: tradeoffs.models.GPT (untied head, or a tied head under a unit final-norm gain).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError
from tradeoffs.formats import FormatSpec, hadamard_matrix, is_power_of_two


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


def block_rotation(dimension: int, size: int, signs_seed: int | None) -> Tensor:
    """The (dimension x dimension) block-diagonal randomized Hadamard matrix with blocks of `size`."""
    block = hadamard_matrix(size, signs_seed=signs_seed, dtype=torch.float64)
    return torch.block_diag(*([block] * (dimension // size)))


def is_gpt(model: nn.Module) -> bool:
    """Whether the model has the layout of tradeoffs.models.GPT."""
    return all(hasattr(model, name) for name in ("wte", "wpe", "blocks", "ln_f", "lm_head"))


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
    return nn.RMSNorm(width, eps=eps).to(norm.weight.device)


def _transform_rows(linear: nn.Linear, left: Tensor) -> None:
    """W <- left W, b <- left b (a transform of the output)."""
    linear.weight.copy_((left @ linear.weight.double()).to(linear.weight.dtype))
    if linear.bias is not None:
        linear.bias.copy_((left @ linear.bias.double()).to(linear.bias.dtype))


def _transform_columns(linear: nn.Linear, right: Tensor) -> None:
    """W <- W right (a transform of the input)."""
    linear.weight.copy_((linear.weight.double() @ right).to(linear.weight.dtype))


@torch.no_grad()
def rotate_gpt(
    model: nn.Module, size: int, signs_seed: int | None, online: bool, online_formats: list[FormatSpec]
) -> dict[str, Tensor]:
    """Rotate a tradeoffs.models.GPT in place (module docstring); returns the online rotation (s x s, FP32)
    per Linear name, to apply to its input at run time."""
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
    rotations: dict[str, Tensor] = {}
    if online:
        names = {id(m): n for n, m in model.named_modules()}
        for writer in writers:
            block_size = hadamard_size(writer.in_features, 0, online_formats)
            h = hadamard_matrix(block_size, dtype=torch.float64)
            _transform_columns(writer, torch.block_diag(*([h] * (writer.in_features // block_size))))
            rotations[names[id(writer)]] = h.float()
    return rotations
