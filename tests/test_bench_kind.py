"""The bench kind end to end on tiny real cases, its config validation, the GEMM cases per dtype, the qdq
comparison with torchao, the report products and the `bench gemm` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tradeoffs.bench.gemm import ACCURACY_GATE, build_case, check_supported
from tradeoffs.bench.hardware import cpu_units_missing
from tradeoffs.bench.qdq import torchao_qdq
from tradeoffs.errors import ConfigError, Unsupported
from tradeoffs.formats import fake_quant, get_format
from tradeoffs.hardware import GEMM_DTYPES
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.results import collect

FAST = ["bench.min_runs=3", "bench.min_time_s=0.005", "bench.warmup=1", "bench.warmup_time_s=0"]


def benchmark_kind(overrides):
    """The kind a list of overrides names with `benchmark=<kind>` (gemm by default), and the other overrides."""
    named = [o.split("=", 1)[1] for o in overrides if o.startswith("benchmark=")]
    return (named[0] if named else "gemm"), [o for o in overrides if not o.startswith("benchmark=")]


def run(tmp_path, *overrides):
    kind, rest = benchmark_kind(overrides)
    config = load_experiment(kind, [*FAST, *rest])
    path = tmp_path / f"run{len(list(tmp_path.iterdir()))}" / "result.json"
    return run_experiment(f"{kind}/test", config, path, job_threads=1), path


def metrics_of(record, name):
    return [m for m in record.metrics if m.name == name]


def test_gemm_through_the_kind(tmp_path):
    record, path = run(tmp_path, "benchmark=gemm", "dtype=int8", "shapes=[[1,256,128],[32,256,128]]")
    assert record.status == "ok", record.message
    tflops = metrics_of(record, "tflops")
    assert [m.labels["shape"] for m in tflops] == ["1x256x128", "32x256x128"]
    assert all(m.value > 0 for m in tflops)
    pct = metrics_of(record, "pct_of_peak")[0]
    assert pct.labels["peak_dtype"] == "int8"
    if cpu_units_missing(record.provenance["isa_flags"]).get("int8"):  # e.g. an AVX2-only CPU: no VNNI, no AMX
        assert pct.labels["peak_method"] == "no units" and pct.labels["peak_tflops"] is None
        assert "no int8 units: this CPU has none of" in record.message
    else:
        assert pct.labels["peak_method"] == "estimate" and pct.value > 0
    assert "FLOP/cycle" in record.message  # the CPU peak's formula (fp32's at least)
    error = metrics_of(record, "output_rel_error")[0].value
    assert 1e-4 < error < ACCURACY_GATE["int8"]  # int8 quantization is visible, and within its gate
    medians = metrics_of(record, "time_median_s")
    assert {m.labels["noise"] for m in medians} <= {"ok", "warn", "suspect"}
    assert all(m.labels["stop_reason"] in ("min_runs", "min_time") for m in medians)
    assert metrics_of(record, "samples")[0].value >= 3
    samples = json.loads((path.parent / "samples.json").read_text())
    assert len(samples) == 2 and len(samples[0]["samples_s"]) >= 3 and samples[0]["threads"] == 1
    assert metrics_of(record, "peak_rss_growth_bytes")[0].value >= 0


@pytest.mark.parametrize("dtype", ["tf32", "fp8_e4m3", "fp8_e5m2"])
def test_dtypes_without_native_units_are_unsupported_with_the_reason(tmp_path, dtype):
    record, _ = run(tmp_path, f"dtype={dtype}")
    assert record.status == "unsupported" and record.metrics == []
    assert "CPU" in record.message or "tensor-core" in record.message


def test_shapes_a_kernel_cannot_take_are_recorded_per_shape(tmp_path):
    record, _ = run(tmp_path, "dtype=w4_fused", "shapes=[[4,100,64],[4,128,64]]")
    assert record.status == "ok"
    supported = {m.labels["shape"]: m.value for m in metrics_of(record, "supported")}
    assert supported == {"4x100x64": 0, "4x128x64": 1}
    assert "K divisible by 128" in record.message
    record, _ = run(tmp_path, "dtype=w4_fused", "shapes=[[4,100,64]]")
    assert record.status == "unsupported"


@pytest.mark.parametrize("dtype", GEMM_DTYPES)
def test_every_dtype_runs_on_this_cpu_within_its_accuracy_gate_or_is_unsupported(dtype):
    hardware = load_experiment("gemm").hardware
    try:
        check_supported(dtype, "cpu", hardware)
    except Unsupported:
        assert dtype in ("tf32", "fp8_e4m3", "fp8_e5m2")
        return
    case = build_case(dtype, (8, 256, 64), "cpu")
    assert case.output_error < ACCURACY_GATE[dtype]
    assert case.fn().shape == (8, 64)
    assert case.flops == 2 * 8 * 256 * 64 and case.intensity > 0


@pytest.mark.parametrize("bits", ["w4", "w8"])
def test_weight_only_kernels_agree_with_dequantize_then_matmul(bits):
    """Same codes and scales: the fused kernel differs from dequantize-then-matmul by bf16 rounding only."""
    fused = build_case(f"{bits}_fused", (4, 256, 32), "cpu").fn().double()
    unfused = build_case(f"{bits}_dequant", (4, 256, 32), "cpu").fn().double()
    assert (fused - unfused).norm() / unfused.norm() < 1e-2


def test_qdq_through_the_kind_agrees_with_torchao(tmp_path):
    record, _ = run(tmp_path, "benchmark=qdq", "format=mxfp4", "log2_elements=14")
    assert record.status == "ok", record.message
    impls = {m.labels["impl"] for m in metrics_of(record, "elements_per_s")}
    assert impls == {"fake_quant", "compiled", "compiled_alloc", "torchao", "copy", "clone"}
    assert metrics_of(record, "torchao_max_abs_diff")[0].value == 0.0
    speedups = {m.labels["impl"]: m.value for m in metrics_of(record, "speedup_vs_torchao")}
    assert set(speedups) == {"fake_quant", "compiled", "compiled_alloc"} and min(speedups.values()) > 0
    copy_pct = [m.value for m in metrics_of(record, "pct_of_copy") if m.labels["impl"] == "copy"]
    assert copy_pct == [pytest.approx(100.0)]
    assert 15 < metrics_of(record, "qsnr_db")[0].value < 25
    copies = {m.labels["impl"]: m.value for m in metrics_of(record, "copies_of_input")}
    assert copies["fake_quant"] >= 1.0  # at least its output


def test_torchao_counterparts_are_matched_by_structure():
    assert torchao_qdq(get_format("mxint8")) is None and torchao_qdq(get_format("mxfp6_e2m3")) is None
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    for name in ("fp8_e4m3", "mxfp8_e4m3", "nvfp4"):
        torch.testing.assert_close(torchao_qdq(get_format(name))(x), fake_quant(x, name), rtol=0, atol=0)
    int8 = torchao_qdq(get_format("int8"))(x)
    assert (int8 != fake_quant(x, "int8")).float().mean() < 1e-3  # ties of the scale division may differ


def test_copy_benchmark_calibrates_the_bandwidth(tmp_path):
    record, _ = run(tmp_path, "benchmark=bandwidth", "log2_elements=16")
    assert record.status == "ok"
    bandwidth = {m.labels["impl"]: m.value for m in metrics_of(record, "bandwidth_gbs")}
    assert set(bandwidth) == {"copy", "clone", "read"} and min(bandwidth.values()) > 0
    assert "calibration" in record.message


def test_inference_through_the_kind(tmp_path):
    record, path = run(
        tmp_path,
        "benchmark=inference",
        "model=gpt-tiny",
        "dtype=bf16",
        "batch_size=2",
        "prompt_length=8",
        "new_tokens=5",
    )
    assert record.status == "ok", record.message
    values = {m.name: m for m in record.metrics}
    assert values["prefill_tokens_per_s"].value > 0 and values["decode_tokens_per_s"].value > 0
    runs = values["runs"].value
    assert runs >= 3 and values["token_latency_p50_s"].labels["count"] == 4 * runs  # new_tokens - 1 steps
    p50, p90, p99 = (values[f"token_latency_p{q}_s"].value for q in (50, 90, 99))
    assert 0 < p50 <= p90 <= p99
    assert values["logits_rel_error"].value < 0.05 and 0 <= values["token_agreement"].value <= 1
    assert values["decode_pct_of_peak"].labels["peak_method"] == "estimate"
    samples = json.loads((path.parent / "samples.json").read_text())
    assert len(samples[0]["steps_s"]["decode"][0]) == 4


def test_inference_flops_count_every_position():
    from tradeoffs.bench.inference import inference_flops
    from tradeoffs.models import flops_breakdown

    model = load_experiment("inference", ["model=gpt-tiny"]).model
    terms = flops_breakdown(model, 1)
    flops = inference_flops(model, batch=2, prompt=10, new_tokens=5)
    attention = 2 * model.n_layer * model.d_model
    assert flops.prefill == 2 * (10 * terms["dense"] + attention * 55 + terms["lm_head"])  # contexts 1..10
    assert flops.decode == 2 * 4 * (terms["dense"] + attention * 12.5 + terms["lm_head"])  # contexts 11..14


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dtype=fp64"], "valid choices: fp32, tf32"),
        (["benchmark=gemmm"], "invalid value 'gemmm'; valid choices: attention_memory, bandwidth, capture"),
        (["benchmark=qdq"], "needs a format"),
        (["shapes=[[1,2]]"], "[M, K, N]"),
        (["repeat=3"], "bench.repeats=3"),
        (["benchmark=bandwidth", "log2_elements=40"], "10..32"),
        (["benchmark=inference"], "needs a model"),
        (["benchmark=inference", "model=gpt-tiny", "dtype=int8"], "valid choices: fp32, bf16, fp16"),
        (["benchmark=inference", "model=gpt-tiny", "prompt_length=120", "new_tokens=20"], "context_length=128"),
    ],
)
def test_bad_configs_fail_before_running(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        kind, rest = benchmark_kind(overrides)
        load_experiment(kind, rest)


def test_report_products_from_real_results(tmp_path):
    from tradeoffs.report import FIGURES, TABLES
    from tradeoffs.report.reference import export_reference, with_reference

    paths = [
        run(tmp_path, "dtype=fp32", "shapes=[[1,128,128],[64,128,128]]")[1],
        run(tmp_path, "dtype=int8", "shapes=[[1,128,128],[64,128,128]]")[1],
        run(tmp_path, "dtype=fp8_e4m3")[1],
        run(tmp_path, "benchmark=bandwidth", "log2_elements=16")[1],
        run(tmp_path, "benchmark=qdq", "format=mxint8", "log2_elements=12", "compare_torchao=false", "compiled=false")[
            1
        ],
        run(tmp_path, "benchmark=inference", "model=gpt-tiny", "prompt_length=8", "new_tokens=3")[1],
    ]
    results = collect(paths)
    table = TABLES["bench_gemm"].make(results)
    assert set(table.index.get_level_values("dtype")) == {"fp32", "int8", "fp8_e4m3"}
    assert (table["tflops"].dropna() > 0).all() and (table["repeats"].dropna() == 1).all()
    assert "CPU" in table.xs("fp8_e4m3", level="dtype")["kernel"].iloc[0]
    assert TABLES["bench_qdq"].make(results).loc[(slice(None), "mxint8", "fake_quant"), "Melem_per_s"].iloc[0] > 0
    inference = TABLES["bench_inference"].make(results)
    assert inference.loc[(slice(None), "gpt-tiny", "fp32", 1), "decode_tokens_per_s"].iloc[0] > 0
    for name in ("bench_gemm", "bench_roofline"):
        figure = FIGURES[name].make(results)
        assert all(axis.get_ylabel() for axis in figure.axes) and any(axis.get_xlabel() for axis in figure.axes)
        figure.savefig(tmp_path / "figure.png")

    # the same runs kept as a reference set are drawn as hardware of their own beside this run's
    collect_path = tmp_path / "results.parquet"
    results.to_parquet(collect_path)
    reference_dir = tmp_path / "reference"
    reference_set = export_reference(collect_path, "other_cpu", directory=reference_dir)
    no_train = r"no benchmark runs of \['train'\]; its benchmark runs are of: \['bandwidth', 'gemm'"
    with pytest.raises(ConfigError, match=no_train):
        export_reference(collect_path, "x", ("train",), directory=reference_dir)
    with pytest.raises(ConfigError, match="reference name 'H100 SXM'"):
        export_reference(collect_path, "H100 SXM", directory=reference_dir)
    both = TABLES["bench_gemm"].make(with_reference(results, [reference_set]))
    hardware = set(both.index.get_level_values("hardware"))
    assert len(hardware) == 2 and any(h.endswith("(reference: other_cpu)") for h in hardware)
    assert len(TABLES["bench_inference"].make(with_reference(results, [reference_set]))) == 2 * len(inference)
    FIGURES["bench_roofline"].make(with_reference(results, [reference_set])).savefig(tmp_path / "roofline.png")


def test_bench_gemm_cli_prints_speedups_and_the_autorange_check(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradeoffs",
            "bench",
            "gemm",
            "--sizes",
            "128",
            "--repeats",
            "2",
            "--threads",
            "1",
            "--min-runs",
            "3",
            "--min-time",
            "0.01",
            "--json",
            str(tmp_path / "gemm.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "2 fresh process(es)" in out and "bf16/fp32 at 128^3" in out and "int8/fp32 at 128^3" in out
    assert "blocked_autorange" in out and "within 5%" in out
    runs = json.loads((tmp_path / "gemm.json").read_text())
    assert len(runs) == 2 and runs[0]["threads"] == 1 and runs[0]["autorange"][0]["autorange_s"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["fp32", "tf32", "bf16", "fp8_e4m3", "int8", "w4_fused"])
def test_gpu_gemm_cases(dtype):
    from tradeoffs.bench.hardware import hardware_for_device

    try:
        check_supported(dtype, "cuda", hardware_for_device("cuda"))
        case = build_case(dtype, (64, 512, 256), "cuda")
    except Unsupported as reason:
        pytest.skip(str(reason))
    assert case.output_error < ACCURACY_GATE[dtype]


@pytest.mark.parametrize("dtype", ["fp8_e4m3", "fp8_e5m2"])
def test_fp8_operands_are_the_formats_librarys_codes_as_torch_float8(dtype):
    from tradeoffs.bench.gemm import _fp8

    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1)) * 10
    codes, scale = _fp8(x, dtype)
    assert codes.dtype == {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}[dtype]
    torch.testing.assert_close(codes.float() * scale, fake_quant(x, dtype), rtol=0, atol=0)


def test_a_shape_that_would_overrun_the_jobs_time_budget_is_skipped_with_the_reason(tmp_path):
    """The first shape is measured; the next, 2^12 times its FLOPs, is predicted to overrun a budget that the
    first one already spent (its timed samples alone take 5 ms)."""
    record, _ = run(tmp_path, "dtype=fp32", "shapes=[[8,64,64],[512,512,512]]", "time_budget_s=0.001")
    assert record.status == "ok", record.message
    supported = {m.labels["shape"]: m.value for m in metrics_of(record, "supported")}
    assert supported == {"8x64x64": 1, "512x512x512": 0}
    assert "512x512x512 skipped: about" in record.message and "time_budget_s=0.001" in record.message
    record, _ = run(tmp_path, "dtype=fp32", "shapes=[[8,64,64],[512,512,512]]")  # no budget: both measured
    assert {m.labels["shape"] for m in metrics_of(record, "tflops")} == {"8x64x64", "512x512x512"}
