"""GPTQ speed: one layer side by side with round-to-nearest and llmcompressor's quantize_weight (same
Hessian, grid, scales, damping, block size and act-order), and a whole small GPT, in one run.

Times are CPU seconds per thread (time.process_time / torch threads), Hessian excluded for the layer, so a
busy shared machine inflates them less than wall time; ratios compare implementations measured in the
same process. The registry implementation is optional (a test dependency): without it its column is
skipped. Usage: main(["--size", "4096", "--threads", "1"]).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from tradeoffs.formats import FormatSpec, compute_scales, fake_quant
from tradeoffs.quant.gptq import GPTQ, GPTQConfig, gptq_quantize_weight
from tradeoffs.quant.rtn import RTNConfig
from tradeoffs.quant.sequential import hessian
from tradeoffs.quant.spec import get_spec

LAYER_FORMATS = {
    "int4_asym_g128": FormatSpec(
        name="int4_asym_g128", element="int4", asymmetric=True, granularity="block", block_size=128
    ),
    "fp8_e4m3_channel": FormatSpec(name="fp8_e4m3_channel", element="fp8_e4m3", granularity="channel"),
}


def cpu_seconds(function: Callable[[], object]) -> tuple[float, object]:
    """CPU time per thread of one call, and its result."""
    start = time.process_time()
    result = function()
    return (time.process_time() - start) / torch.get_num_threads(), result


def llmcompressor_gptq(
    weight: torch.Tensor, h: torch.Tensor, fmt: FormatSpec, settings: GPTQ
) -> Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None:
    """llmcompressor's GPTQ (quantize_weight) on one layer with our up-front scales, its quantization args
    describing the same grid (block or channel): a call that runs it and returns its quantized weight, losses and
    fallback mask; None when llmcompressor is not installed."""
    try:
        from compressed_tensors.quantization import QuantizationArgs
        from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
    except ImportError:
        return None
    element = fmt.element_format
    strategy = {"block": "group", "channel": "channel"}[fmt.granularity]
    args = QuantizationArgs(
        num_bits=element.bits,
        type="int" if element.kind == "int" else "float",
        symmetric=not fmt.asymmetric,
        strategy=strategy,
        group_size=fmt.block_size if strategy == "group" else None,
        actorder="weight" if settings.act_order else None,
    )
    scales = compute_scales(weight, fmt, axis=-1)
    # its integer codes are signed ([-8, 7] for 4 bits): our zero point shifted by half the range
    zero = torch.zeros_like(scales.scale) if scales.zero_point is None else scales.zero_point - 2 ** (element.bits - 1)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, losses, fallback = quantize_weight(
            weight[None].clone(),
            h[None].clone(),
            scales.scale[None],
            zero.to(torch.int8)[None],
            None,
            args,
            blocksize=settings.block_size,
            percdamp=settings.damp,
        )
        return quantized[0], losses, fallback

    return run


def layer_benchmark(size: int, settings: GPTQ) -> list[dict]:
    """GPTQ, RTN and the registry's GPTQ on one size x size layer per format in LAYER_FORMATS."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(size, size, generator=generator)
    h = hessian(torch.randn(2 * size, size, generator=generator))
    rows = []
    for name, fmt in LAYER_FORMATS.items():
        ours_s, ours = cpu_seconds(lambda fmt=fmt: gptq_quantize_weight(weight, h, fmt, dataclass_upfront(settings)))
        rtn_s, _ = cpu_seconds(lambda fmt=fmt: fake_quant(weight, fmt, axis=-1))
        row = {"format": name, "gptq_s": ours_s, "rtn_s": rtn_s}
        registry = llmcompressor_gptq(weight, h, fmt, settings)
        if registry is not None:
            theirs_s, (theirs, _losses, _fallback) = cpu_seconds(registry)
            differ = ours != theirs
            row |= {"registry_s": theirs_s, "rows_differing": int(differ.any(dim=1).sum()), "ratio": ours_s / theirs_s}
        rows.append(row)
    return rows


def dataclass_upfront(settings: GPTQ) -> GPTQ:
    """The settings with scales fixed up front (the registry's only mode)."""
    return GPTQ(settings.block_size, settings.damp, settings.act_order, "upfront")


def model_benchmark(model_size: str) -> dict:
    """GPTQ and RTN (W4A16) on a whole freshly initialised GPT of the ladder, 32 x 128 calibration tokens."""
    import copy

    from tradeoffs.models import GPT, ModelConfig
    from tradeoffs.quant.api import quantize_

    widths = {"gpt-1m": (128, 5, 4), "gpt-3m": (192, 7, 6), "gpt-10m": (320, 8, 5)}
    d_model, n_layer, n_head = widths[model_size]
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(
            d_model=d_model, n_layer=n_layer, n_head=n_head, n_kv_head=n_head, d_ff=4 * d_model, context_length=128
        )
    )
    calibration = torch.randint(0, 256, (32, 128), generator=torch.Generator().manual_seed(0))
    spec = get_spec("W4A16")
    gptq_s, _ = cpu_seconds(lambda: quantize_(copy.deepcopy(model), GPTQConfig(spec), calibration))
    rtn_s, _ = cpu_seconds(lambda: quantize_(copy.deepcopy(model), RTNConfig(spec)))
    return {"model": model_size, "gptq_s": gptq_s, "rtn_s": rtn_s, "ratio_gptq_rtn": gptq_s / rtn_s}


def main(argv: list[str] | None = None) -> int:
    """Print the layer and whole-model timings and their ratios."""
    parser = argparse.ArgumentParser(prog="bench gptq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="layer size (size x size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--act-order", action="store_true")
    parser.add_argument("--model", default="gpt-3m", choices=["gpt-1m", "gpt-3m", "gpt-10m", "none"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = GPTQ(block_size=args.block_size, act_order=args.act_order)
    print(f"GPTQ on a {args.size} x {args.size} layer, {args.threads} thread(s), CPU s per thread, Hessian excluded")
    for row in layer_benchmark(args.size, settings):
        line = f"  {row['format']:>18}: ours {row['gptq_s']:.2f} s, RTN {row['rtn_s']:.3f} s"
        if "registry_s" in row:
            line += (
                f", llmcompressor {row['registry_s']:.2f} s, ours/llmcompressor {row['ratio']:.2f}, "
                f"rows differing {row['rows_differing']} of {args.size}"
            )
        print(line)
    if args.model != "none":
        row = model_benchmark(args.model)
        print(
            f"whole {row['model']} (W4A16, 32 x 128 calibration tokens): GPTQ {row['gptq_s']:.2f} s, "
            f"RTN {row['rtn_s']:.3f} s, GPTQ/RTN {row['ratio_gptq_rtn']:.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
