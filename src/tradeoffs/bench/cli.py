"""`python -m tradeoffs bench gemm|qdq`: side-by-side ratio benchmarks of GEMMs and of quantize-dequantize.

Each repeat runs in a fresh Python process (the parent spawns `--repeats` children one after another, so
they never compete for cores); every ratio is measured inside one process, side by side, and the parent
prints each figure's median across processes with its range [min, max]. Timing settings come from
the bench preset `default` (tradeoffs.presets, bench/default.yaml), overridable by options.

gemm  TFLOP/s and % of peak of fp32, bf16 and int8 GEMMs (and any --dtypes) at square sizes, the bf16 and
      int8 speedups over fp32, and the engine's bf16 median against torch.utils.benchmark's
      blocked_autorange measured in the same process (agreement within 5%).
qdq   elements/s of tradeoffs.formats.fake_quant per format on a 2^26-value fp32 tensor beside a copy into
      a preallocated tensor (the bandwidth limit), an allocating clone and torchao's eager
      quantize-dequantize, with the ratios and each one's peak memory in copies of the input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tradeoffs.bench.targets import Target, target
from tradeoffs.bench.timing import BenchConfig
from tradeoffs.hardware import GEMM_DTYPES
from tradeoffs.presets import load_preset

AUTORANGE_TOLERANCE = 0.05


def load_bench_config(args: argparse.Namespace) -> BenchConfig:
    """The bench preset `default` with the command line's overrides."""
    raw = load_preset("bench", "default")
    overrides = {
        "warmup": args.warmup,
        "min_runs": args.min_runs,
        "min_time_s": args.min_time,
        "max_time_s": args.max_time,
        "repeats": args.repeats,
    }
    for key, value in overrides.items():
        if value is not None:
            raw[key] = value
    return BenchConfig(**raw)


def _parser() -> argparse.ArgumentParser:
    from tradeoffs.bench.qdq import QDQ_FORMATS

    parser = argparse.ArgumentParser(
        prog="tradeoffs bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="benchmark", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repeats", type=int, help="fresh processes (default: bench.repeats, 3)")
    common.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    common.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if present")
    common.add_argument("--warmup", type=int)
    common.add_argument("--min-runs", type=int)
    common.add_argument("--min-time", type=float, help="seconds")
    common.add_argument("--max-time", type=float, help="seconds, the cap per measurement")
    common.add_argument("--json", type=Path, help="also write every process's figures here")
    common.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    gemm = sub.add_parser("gemm", parents=[common], help="GEMM throughput and speedups by dtype")
    gemm.add_argument("--sizes", type=int, nargs="+", help="square sizes (default cpu: 2048 4096; cuda: + 8192)")
    gemm.add_argument("--dtypes", nargs="+", default=["fp32", "bf16", "int8"], choices=GEMM_DTYPES)
    qdq = sub.add_parser("qdq", parents=[common], help="fake_quant elements/s against a copy and torchao")
    qdq.add_argument("--log2-elements", type=int, default=26, help="input size 2^N fp32 values (default 26)")
    qdq.add_argument("--formats", nargs="+", default=None, help=f"named formats (default: {' '.join(QDQ_FORMATS)})")
    qdq.add_argument("--no-torchao", action="store_true", help="skip torchao's quantize-dequantize")
    qdq.add_argument("--no-compiled", action="store_true", help="skip fake_quant through torch.compile")
    return parser


# ------------------------------------------------------------------------------------------------ child
def _gemm_child(args: argparse.Namespace, config: BenchConfig, device: str) -> dict[str, Any]:
    import torch

    from tradeoffs.bench.gemm import build_case, check_supported
    from tradeoffs.bench.hardware import hardware_for_device, peaks_for
    from tradeoffs.bench.timing import measure
    from tradeoffs.errors import Unsupported
    from tradeoffs.provenance import collect_provenance

    hardware = hardware_for_device(device)
    peaks = peaks_for(hardware, torch.get_num_threads(), collect_provenance())
    sizes = args.sizes or ([2048, 4096, 8192] if device == "cuda" else [2048, 4096])
    rows, checks = [], []
    for size in sizes:
        for dtype in args.dtypes:
            row: dict[str, Any] = {"size": size, "dtype": dtype}
            try:
                check_supported(dtype, device, hardware)
                case = build_case(dtype, (size, size, size), device)
            except Unsupported as reason:
                rows.append({**row, "unsupported": str(reason)})
                continue
            with case.precision():
                measurement = measure(case.fn, config, device=device)
                if dtype == "bf16" and size == sizes[0]:
                    checks.append({"size": size, **_against_autorange(case.fn, config, device, measurement)})
            tflops = case.flops / measurement.stats.median / 1e12
            rows.append(
                {
                    **row,
                    "tflops": tflops,
                    "pct_of_peak": peaks.percent(case.peak_dtype, tflops),
                    "no_peak": peaks.peak_statement(case.peak_dtype),
                    "median_s": measurement.stats.median,
                    "noise": measurement.stats.noise,
                    "samples": measurement.stats.count,
                    "stop_reason": measurement.stop_reason,
                    "output_error": case.output_error,
                }
            )
    return {"hardware": peaks.hardware, "peak_source": peaks.source, "rows": rows, "autorange": checks}


def _against_autorange(fn: Any, config: BenchConfig, device: str, first: Any, rounds: int = 3) -> dict[str, float]:
    """The engine's median and torch.utils.benchmark's blocked_autorange median of the same call, alternated
    for `rounds` rounds (each autorange as long as the engine measured just before it), so that drift of a
    shared machine hits both alike; the medians over rounds."""
    from torch.utils import benchmark

    from tradeoffs.bench.timing import measure

    engine, autorange = [], []
    for index in range(rounds):
        measurement = first if index == 0 else measure(fn, config, device=device)
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=measurement.threads)
        engine.append(measurement.stats.median)
        autorange.append(timer.blocked_autorange(min_run_time=max(measurement.measured_s, config.min_time_s)).median)
    return {"engine_s": statistics.median(engine), "autorange_s": statistics.median(autorange)}


def _qdq_child(args: argparse.Namespace, config: BenchConfig, device: str) -> dict[str, Any]:
    from tradeoffs.bench.qdq import QDQ_FORMATS, qdq_input, time_copies, time_format

    x = qdq_input(args.log2_elements, 0, device)
    input_bytes = x.numel() * x.element_size()

    def row(format_name: str, timed: Any) -> dict[str, Any]:
        return {
            "format": format_name,
            "impl": timed.name,
            "elements_per_s": timed.elements_per_s,
            "copies_of_input": timed.copies_of_input(input_bytes),
            "noise": timed.measurement.stats.noise,
            "samples": timed.measurement.stats.count,
        }

    copies = time_copies(x, config, device)
    rows = [row("-", t) for t in copies]
    for name in args.formats or QDQ_FORMATS:
        timed, agreement = time_format(name, x, config, device, not args.no_torchao, not args.no_compiled)
        rows.extend({**row(name, t), "max_abs_diff_vs_torchao": agreement.max_abs_diff} for t in timed)
    return {"elements": x.numel(), "rows": rows}


# ----------------------------------------------------------------------------------------------- parent
def _spread(values: Sequence[float]) -> str:
    """'median [min, max]' of one figure across processes."""
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.4g}"
    return f"{median:.4g} [{min(values):.4g}, {max(values):.4g}]"


def _verdict(values: Sequence[float], goal: Target) -> str:
    """A target judged on the median across processes, and whether every process met it."""
    met = "met" if goal.met(statistics.median(values)) else "not met"
    return f"{met}; in every process: {'yes' if all(goal.met(v) for v in values) else 'no'}"


def _report_gemm(runs: list[dict[str, Any]]) -> None:
    print(f"GEMM on {runs[0]['hardware']}; {len(runs)} fresh process(es): median [min, max] across processes")
    print(f"peaks: {runs[0]['peak_source']}")
    keyed = [{(r["size"], r["dtype"]): r for r in run["rows"]} for run in runs]
    print(f"{'size':>6} {'dtype':>10} {'TFLOP/s':>28} {'% of peak':>24}  noise")
    for key, first in keyed[0].items():
        if "unsupported" in first:
            print(f"{key[0]:>6} {key[1]:>10}  unsupported: {first['unsupported']}")
            continue
        tflops = _spread([k[key]["tflops"] for k in keyed])
        no_peak = first.get("no_peak", "")
        pct = no_peak.split(":")[0] if no_peak else _spread([k[key]["pct_of_peak"] for k in keyed])
        noise = ",".join(k[key]["noise"] for k in keyed)
        print(f"{key[0]:>6} {key[1]:>10} {tflops:>28} {pct:>24}  {noise}")
    print("speedups over fp32 (ratio of TFLOP/s within each process):")
    for size, dtype in keyed[0]:
        if dtype == "fp32" or (size, "fp32") not in keyed[0] or "tflops" not in keyed[0][(size, dtype)]:
            continue
        if "tflops" not in keyed[0][(size, "fp32")]:
            continue
        ratios = [k[(size, dtype)]["tflops"] / k[(size, "fp32")]["tflops"] for k in keyed]
        print(f"  {dtype}/fp32 at {size}^3: {_spread(ratios)}x")
    for check in zip(*(run["autorange"] for run in runs), strict=True):
        ratios = [c["engine_s"] / c["autorange_s"] for c in check]
        every = "yes" if max(abs(r - 1) for r in ratios) <= AUTORANGE_TOLERANCE else "no"
        typical = "yes" if abs(statistics.median(ratios) - 1) <= AUTORANGE_TOLERANCE else "NO"
        print(
            f"engine / torch.utils.benchmark blocked_autorange (medians, alternated 3 rounds per process), "
            f"bf16 {check[0]['size']}^3: {_spread(ratios)}; within {AUTORANGE_TOLERANCE:.0%}: {typical} "
            f"(in every process: {every})"
        )


def _report_qdq(runs: list[dict[str, Any]]) -> None:
    n = runs[0]["elements"]
    print(f"fake_quant on {n} fp32 values (2^{n.bit_length() - 1}); {len(runs)} fresh process(es): median [min, max]")
    keyed = [{(r["format"], r["impl"]): r for r in run["rows"]} for run in runs]
    copy = [k[("-", "copy")]["elements_per_s"] for k in keyed]
    print(f"{'format':>11} {'impl':>14} {'Melem/s':>24} {'% of copy':>22} {'copies of input':>16}  noise")
    for key in keyed[0]:
        rate = [k[key]["elements_per_s"] for k in keyed]
        of_copy = [100 * r / c for r, c in zip(rate, copy, strict=True)]
        memory = _spread(
            [float("nan") if k[key]["copies_of_input"] is None else k[key]["copies_of_input"] for k in keyed]
        )
        noise = ",".join(k[key]["noise"] for k in keyed)
        print(
            f"{key[0]:>11} {key[1]:>14} {_spread([r / 1e6 for r in rate]):>24} {_spread(of_copy):>22} "
            f"{memory:>16}  {noise}"
        )
    of_copy_target, torchao_target = target("qdq_of_copy"), target("qdq_vs_torchao")
    print(
        f"targets (bench/targets.yaml): {of_copy_target.bound}% of copy and {torchao_target.bound}x torchao eager. "
        "Like for like: 'compiled' writes into a preallocated output as the copy does; 'fake_quant' (eager) and "
        "'compiled_alloc' allocate theirs as the clone does (fresh pages: the clone runs at a fraction of the copy)"
    )
    for name, impl in [key for key in keyed[0] if key[0] != "-" and key[1] != "torchao"]:
        rate = [k[(name, impl)]["elements_per_s"] for k in keyed]
        of_copy = [100 * r / k[("-", "copy")]["elements_per_s"] for r, k in zip(rate, keyed, strict=True)]
        of_clone = [100 * r / k[("-", "clone")]["elements_per_s"] for r, k in zip(rate, keyed, strict=True)]
        line = f"  {name:>11} {impl:>14}: {_spread(of_copy)}% of copy ({_verdict(of_copy, of_copy_target)})"
        line += f", {_spread(of_clone)}% of clone"
        if (name, "torchao") in keyed[0]:
            vs = [r / k[(name, "torchao")]["elements_per_s"] for r, k in zip(rate, keyed, strict=True)]
            diff = keyed[0][(name, impl)]["max_abs_diff_vs_torchao"]
            verdict = _verdict(vs, torchao_target)
            line += f", {_spread(vs)}x torchao ({verdict}; max |ours - torchao| = {diff:.3g})"
        else:
            line += ", no torchao counterpart"
        print(line)


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = load_bench_config(args)
    result = (_gemm_child if args.benchmark == "gemm" else _qdq_child)(args, config, device)
    timing = dataclasses.asdict(config)
    result.update(threads=torch.get_num_threads(), device=device, config=timing)
    args.child_out.write_text(json.dumps(result))


def main(argv: list[str]) -> None:
    """Run `bench gemm|qdq` in --repeats fresh processes and print the figures and ratios."""
    args = _parser().parse_args(argv)
    if args.child_out:
        _child(args)
        return
    repeats = load_bench_config(args).repeats
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(repeats):
            out = Path(scratch) / f"run{index}.json"
            print(f"process {index + 1}/{repeats} ...", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "tradeoffs", "bench", *argv, "--child-out", str(out)], check=True)
            runs.append(json.loads(out.read_text()))
    print(f"threads: {runs[0]['threads']}, device: {runs[0]['device']}, timing: {runs[0]['config']}")
    (_report_gemm if args.benchmark == "gemm" else _report_qdq)(runs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1))
