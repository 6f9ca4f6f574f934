"""GPTQ (Frantar et al. 2023, as the IST-DASLab reference implements it): the method (GPTQConfig and its handler,
which runs it over a decoder layer by layer with tradeoffs.quant.sequential) and the algorithm on one weight matrix.

With the Hessian H = 2/n X^T X of the layer's inputs X (n rows), GPTQ rounds the weight's input columns one
at a time and spreads each column's rounding error over the columns not yet rounded, weighted by the
inverse Hessian, which minimises ||W X^T - Q X^T||^2 column by column:

- dead inputs (H_jj = 0) get H_jj = 1 and zero weights;
- act-order permutes the columns by decreasing H_jj;
- H += damp * mean(diag H) * I; U = cholesky(H^-1, upper) (Cholesky, its inverse, Cholesky again);
- columns run in lazy blocks of `block_size`: within a block each column's error updates the block's later
  columns, and the block's errors update all later columns in one matrix product at its end;
- each column is rounded with scales from tradeoffs.formats (compute_scales, round_with_scales): fixed up
  front from the original weight (groups keep their original columns under act-order), or, for groups with
  FP32 scales, found from the group's current columns when its first column is reached (the reference
  takes them from the weight as it stands at the start of the lazy block, so do we).

The algorithm knows no number grid: the format's scale-then-round API decides every rounded value. The working
copy is held transposed (input columns as contiguous rows), which makes the per-column updates
contiguous; the arithmetic per element is the reference's (a product, then a subtraction), so the result is
bit-identical to an implementation computing the same operations in the other layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.formats import FormatSpec, Scales, compute_scales, get_format, round_with_scales
from tradeoffs.quant.api import QuantizeResult, register_quantize_handler
from tradeoffs.quant.layers import make_targets_quantized
from tradeoffs.quant.rtn import round_weights
from tradeoffs.quant.sequential import calibrated_model
from tradeoffs.quant.spec import QuantSpec, get_spec, resolve_spec, spec_names
from tradeoffs.quant.structure import require_blocks

GROUP_SCALES = ("auto", "upfront", "reached")


@dataclass(frozen=True)
class GPTQ:
    """GPTQ's settings (Frantar et al. 2023, the IST-DASLab reference).

    block_size: columns per lazy batch update; damp: added to the Hessian's diagonal as a fraction of its mean;
    act_order: columns in order of decreasing Hessian diagonal; group_scales: `upfront` fixes every group's
    scales from the original weight before any column is rounded, `reached` finds a group's scales when its
    first column is reached (the reference's default), `auto` is `reached` for groups with FP32 scales and
    `upfront` otherwise (MX and NV block formats, NVFP4's tensor scale included, and channel/tensor scales).
    """

    block_size: int = 128
    damp: float = 0.01
    act_order: bool = False
    group_scales: str = "auto"

    def __post_init__(self) -> None:
        check_positive("gptq.block_size", self.block_size)
        check_positive("gptq.damp", self.damp, allow_zero=True)
        check_choice("gptq.group_scales", self.group_scales, GROUP_SCALES)


def check_grid(spec: QuantSpec, gptq: GPTQ) -> None:
    """ConfigError unless GPTQ can round the spec's weight format under these settings."""
    fmt = spec.weight_format
    if gptq.group_scales == "reached" and (fmt.granularity != "block" or fmt.scale_format != "fp32"):
        raise ConfigError(
            f"gptq.group_scales=reached needs groups with FP32 scales; weight format "
            f"'{fmt.name or fmt.element}' ({fmt.granularity}, {fmt.scale_format} scales) fixes its scales up "
            "front. Valid choices: auto, upfront"
        )
    if fmt.rounding != "nearest":
        raise ConfigError(f"gptq: weight format '{fmt.name}' rounds {fmt.rounding}; GPTQ needs rounding=nearest")


@dataclass(frozen=True)
class GPTQConfig:
    """GPTQ on the weights, layer by layer, each layer calibrated on the outputs of the already-quantized
    layers before it. A weight-only method: activations stay in full precision (for W4A4 combine with
    RotationConfig(gptq=GPTQ(...)), as QuaRot does)."""

    spec: QuantSpec | str = "W4A16"
    gptq: GPTQ = field(default_factory=GPTQ)

    def __post_init__(self) -> None:
        resolve_spec(self)
        if not self.spec.weight_only:
            weight_only = [name for name in spec_names() if get_spec(name).weight_only]
            raise ConfigError(
                f"gptq.spec: {self.spec.label} quantizes activations; GPTQ is a weight-only method. Valid "
                f"choices: {', '.join(weight_only)} (or a spec with activation=''); for quantized "
                "activations use RotationConfig or SmoothQuantConfig with gptq=GPTQ(...)"
            )
        check_grid(self.spec, self.gptq)

    @property
    def needs_calibration(self) -> bool:
        return True


def resolve_group_scales(fmt: FormatSpec, group_scales: str) -> str:
    """`upfront` or `reached` for a weight format under a GPTQ group_scales setting (see GPTQ)."""
    fp32_groups = fmt.granularity == "block" and fmt.scale_format == "fp32" and not fmt.tensor_scale
    if group_scales == "auto":
        return "reached" if fp32_groups else "upfront"
    if group_scales == "reached" and not fp32_groups:
        raise ConfigError(
            f"gptq.group_scales=reached: format '{fmt.name or fmt.element}' ({fmt.granularity}, "
            f"{fmt.scale_format} scales) fixes its scales up front. Valid choices: auto, upfront"
        )
    return group_scales


def inverse_hessian_factor(h: Tensor, damp: float) -> Tensor:
    """U = cholesky((H + damp * mean(diag H) I)^-1, upper): the factor GPTQ's updates read rows of."""
    h = h.clone()
    diagonal = torch.diagonal(h)
    diagonal.add_(damp * torch.mean(diagonal))
    factor = torch.linalg.cholesky(h)
    return torch.linalg.cholesky(torch.cholesky_inverse(factor), upper=True)


class _ColumnScales:
    """The scales each column is rounded with. Up front: the original weight's (rows, granules), a column
    of the permuted order keeping its original column's. Reached: a group's, found from the working copy
    (transposed: columns along axis 0) when its first column comes up."""

    def __init__(self, weight: Tensor, fmt: FormatSpec, mode: str, perm: Tensor | None):
        self.fmt = fmt
        self.perm = None if perm is None else perm.tolist()
        self.upfront = compute_scales(weight, fmt, axis=1) if mode == "upfront" else None
        self.group: Scales | None = None
        self.group_start = 0

    def column(self, index: int, weight_t: Tensor) -> Scales:
        """The scales of column `index` (of the permuted order); `weight_t` the working copy as it stands at
        the start of the lazy block."""
        if self.upfront is not None:
            original = index if self.perm is None else self.perm[index]
            return self.upfront.for_slice(original, original + 1)
        if index % self.fmt.block_size == 0:
            self.group = compute_scales(weight_t[index : index + self.fmt.block_size].T, self.fmt, axis=1)
            self.group_start = index
        offset = index - self.group_start
        return self.group.for_slice(offset, offset + 1)


def gptq_quantize_weight(weight: Tensor, h: Tensor, fmt: FormatSpec | str, settings: GPTQ | None = None) -> Tensor:
    """The GPTQ-quantized (dequantized, FP32) weight (out, in) for the Hessian h (in, in) of its inputs,
    in format `fmt` along the input features (see the module docstring)."""
    fmt, settings = get_format(fmt), settings or GPTQ()
    columns = weight.shape[1]
    if h.shape != (columns, columns):
        raise ValueError(f"gptq: Hessian of shape {tuple(h.shape)} for a weight of shape {tuple(weight.shape)}")
    if fmt.granularity == "block" and columns % fmt.block_size:
        raise ConfigError(
            f"spec.weight: block/group size {fmt.block_size} does not divide the {columns} input features"
        )
    mode = resolve_group_scales(fmt, settings.group_scales)
    weight = weight.detach().float()
    h = h.detach().float().clone()
    dead = torch.diagonal(h) == 0
    perm = torch.argsort(torch.diagonal(h).masked_fill(dead, 1.0), descending=True) if settings.act_order else None
    scales = _ColumnScales(weight, fmt, mode, perm)
    w_t = weight.T.contiguous() if perm is None else weight.T[perm].contiguous()  # columns as rows
    if dead.any():
        torch.diagonal(h)[dead] = 1.0
        w_t[dead if perm is None else dead[perm]] = 0.0
    if perm is not None:
        h = h[perm][:, perm]
    u = inverse_hessian_factor(h, settings.damp)
    del h
    for start in range(0, columns, settings.block_size):
        stop = min(start + settings.block_size, columns)
        block = w_t[start:stop].clone()
        errors = torch.empty_like(block)
        u_block = u[start:stop, start:stop]
        for i in range(stop - start):
            column = block[i : i + 1]
            q = round_with_scales(column.T, scales.column(start + i, w_t)).T
            error = errors[i : i + 1]
            torch.sub(column, q, out=error)
            error.div_(u_block[i, i])
            block[i + 1 :] -= u_block[i, i + 1 :, None] * error
            column.copy_(q)
        w_t[start:stop] = block
        if stop < columns:
            w_t[stop:] -= u[start:stop, stop:].T @ errors
    if perm is not None:
        w_t = w_t[torch.argsort(perm)]
    return w_t.T.contiguous()


@torch.no_grad()
def gptq_model(
    model: nn.Module, targets: dict[str, nn.Linear], fmt: FormatSpec, settings: GPTQ, batches: list[Tensor]
) -> None:
    """Quantize the target Linears of `model` with GPTQ in order (tradeoffs.quant.sequential), in place."""
    calibrated_model(model, targets, batches, lambda linear, h: gptq_quantize_weight(linear.weight, h, fmt, settings))


def quantize_weights(
    model: nn.Module, targets: dict[str, nn.Linear], fmt: FormatSpec, gptq: GPTQ | None, batches: list[Tensor]
) -> None:
    """The weights of methods that transform the model first (SmoothQuant, rotation): GPTQ with `gptq`, else
    round-to-nearest."""
    if gptq is None:
        round_weights(targets, fmt)
    else:
        gptq_model(model, targets, fmt, gptq, batches)


def check_blocks(model: nn.Module, key: str) -> None:
    """ConfigError naming `key` unless the model has the decoder blocks GPTQ calibrates through."""
    require_blocks(model, key, "GPTQ calibrates each layer on the outputs of the quantized layers before it")


@register_quantize_handler(GPTQConfig, check=lambda model, config: check_blocks(model, "gptq"))
def _quantize(
    model: nn.Module, config: GPTQConfig, targets: dict[str, nn.Linear], batches: list[Tensor], result: QuantizeResult
) -> None:
    spec = config.spec
    make_targets_quantized(targets, spec.activation_format, spec.weight_format)
    gptq_model(model, targets, spec.weight_format, config.gptq, batches)
