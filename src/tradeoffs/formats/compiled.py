"""The compiled path of fake_quant: the eager arithmetic of tradeoffs.formats.scales fused by torch.compile,
bit-identical to it, compiled once per format, axis and input shape.

Kernels are specialised to each shape (dynamic=False): the compiled functions of all formats share one
dynamo cache entry (the wrapper of functools.partial), whose shape changes would otherwise turn every
kernel dynamic, and a dynamic kernel indexes blocks with integer divisions, unvectorised (~20x slower).
Inductor writes a pointwise result to memory once it counts more than 30 operations; the per-granule
scale arithmetic inlined into the rounding pass counts more, and that write and re-read cost a third of
the bandwidth. Two-level (NVFP4) scales instead run as passes of their own, vectorized across blocks:
the blocks' amax without the finite filter (which halves its speed; taken only when a block is not
finite, the test the eager path makes too), their scales, then the rounding.

fake_quant_group compiles the quantizations of several small tensors (the GEMM operands of one pass of an
emulated training step) into one graph, two-level scales included: there, the overhead of one call per
pass outweighs the bandwidth that the staged passes save on large tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from tradeoffs.formats.scales import (
    Scales,
    draw_noise,
    fake_quant_eager,
    into,
    normalized_axis,
    round_values,
    scales_of,
    to_granules,
)
from tradeoffs.formats.spec import FormatSpec, ScaleRule

log = logging.getLogger(__name__)
T = TypeVar("T")

_COMPILE_OPTIONS = {"realize_opcount_threshold": 1000}
_Compiled = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]  # (x, noise, out)
_COMPILED: dict[tuple[str, int], _Compiled] = {}
_GroupCompiled = Callable[[list[torch.Tensor], list[torch.Tensor | None]], tuple[torch.Tensor, ...]]
_COMPILED_GROUPS: dict[tuple[tuple[str, int], ...], _GroupCompiled] = {}
_COMPILE_BROKEN: list[str] = []  # the first compilation error; compilation is not retried after it


def compile_failure() -> str | None:
    """The error that turned fake_quant's compiled path off in this process (it then runs eager), or None."""
    return _COMPILE_BROKEN[0] if _COMPILE_BROKEN else None


def _fused(x, noise, out, spec: FormatSpec, axis: int) -> torch.Tensor:
    return into(fake_quant_eager(x, spec, axis, noise), out)


def _amax_pass(x: torch.Tensor, spec: FormatSpec, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each block's max |x| and their max, inf or NaN where a block holds one (then the caller filters)."""
    amax = to_granules(x, x.shape[axis] // spec.block_size, axis).abs().amax(dim=-1, keepdim=True)
    return amax, amax.amax()


def _scales_pass(x, amax, spec: FormatSpec, axis: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scales = scales_of(x, spec, axis, block_amax=amax)
    return scales.block_scale, scales.tensor_scale, scales.reciprocal


def _rounding_pass(x, block_scale, tensor_scale, reciprocal, noise, out, spec: FormatSpec, axis: int) -> torch.Tensor:
    scales = Scales(block_scale, tensor_scale, None, reciprocal, spec, axis, spec.block_size)
    return into(round_values(x, scales, noise), out)


def _spec_key(spec: FormatSpec) -> str:
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def _compile(function: Callable) -> Callable:
    """torch.compile specialised to shapes; every format and axis is a guarded variant of one function, so
    many variants are allowed (the default is 8)."""
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, 512)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 4096)
    return torch.compile(function, dynamic=False, options=_COMPILE_OPTIONS)


def _compiled(spec: FormatSpec, axis: int) -> _Compiled:
    key = (_spec_key(spec), axis)
    if key not in _COMPILED:
        if spec.tensor_scale and spec.granularity == "block" and not spec.asymmetric:
            block_amax = _compile(functools.partial(_amax_pass, spec=spec, axis=axis))
            scales = _compile(functools.partial(_scales_pass, spec=spec, axis=axis))
            rounding = _compile(functools.partial(_rounding_pass, spec=spec, axis=axis))

            def staged(x: torch.Tensor, noise: torch.Tensor | None, out: torch.Tensor | None) -> torch.Tensor:
                amax, tensor_amax = block_amax(x) if spec.scale_rule == ScaleRule.absmax else (None, None)
                if tensor_amax is not None and not torch.isfinite(tensor_amax):
                    amax = None  # the scales pass takes the finite amax itself
                return rounding(x, *scales(x, amax), noise, out)

            _COMPILED[key] = staged
        else:
            _COMPILED[key] = _compile(functools.partial(_fused, spec=spec, axis=axis))
    return _COMPILED[key]


def _compiled_or_none(run: Callable[[], T]) -> T | None:
    """run() (a compiled call), or None where compilation is unavailable in this process: it then warns
    once, and the caller runs the eager path, which is always correct."""
    if _COMPILE_BROKEN:
        return None
    try:
        return run()
    except Exception as error:  # no C++ compiler, unsupported backend...
        _COMPILE_BROKEN.append(f"{type(error).__name__}: {error}")
        log.warning("torch.compile of fake_quant failed, using the eager path: %s", _COMPILE_BROKEN[0])
        return None


def compiled_fake_quant(
    x: torch.Tensor, spec: FormatSpec, axis: int, noise: torch.Tensor | None, out: torch.Tensor | None
) -> torch.Tensor | None:
    """fake_quant through torch.compile, or None where compilation is unavailable (see _compiled_or_none)."""
    return _compiled_or_none(lambda: _compiled(spec, axis)(x, noise, out))


def _fused_group(xs, noises, plan: tuple[tuple[FormatSpec, int], ...]) -> tuple[torch.Tensor, ...]:
    return tuple(
        fake_quant_eager(x, spec, axis, noise) for x, noise, (spec, axis) in zip(xs, noises, plan, strict=True)
    )


def _compiled_group(plan: tuple[tuple[FormatSpec, int], ...]) -> _GroupCompiled:
    key = tuple((_spec_key(spec), axis) for spec, axis in plan)
    if key not in _COMPILED_GROUPS:
        _COMPILED_GROUPS[key] = _compile(functools.partial(_fused_group, plan=plan))
    return _COMPILED_GROUPS[key]


def fake_quant_group(
    items: Sequence[tuple[torch.Tensor, FormatSpec, int]], generator: torch.Generator | None, compiled: bool
) -> list[torch.Tensor]:
    """fake_quant of several (x, format, axis) at once, compiled into one graph: one call instead of one (or
    three, two-level scales) per tensor, for the small tensors whose quantization costs more in calls than in
    arithmetic (emulated training). The same bits as fake_quant called on each in turn with `generator`:
    the stochastic rounding draws are taken in the items' order. Identity formats return x itself."""
    resolved = [(x, spec, normalized_axis(x, axis)) for x, spec, axis in items]
    active = [(x, spec, axis) for x, spec, axis in resolved if not spec.is_identity]
    noises = [draw_noise(x, spec, axis, generator) for x, spec, axis in active]
    plan = tuple((spec, axis) for _, spec, axis in active)
    quantized = None
    if compiled and active:
        quantized = _compiled_or_none(lambda: _compiled_group(plan)([x for x, _, _ in active], noises))
    if quantized is None:
        quantized = [
            fake_quant_eager(x, spec, axis, noise) for (x, spec, axis), noise in zip(active, noises, strict=True)
        ]
    results = iter(quantized)
    return [x if spec.is_identity else next(results) for x, spec, _ in resolved]
