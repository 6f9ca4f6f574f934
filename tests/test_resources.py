"""Per-job resources derived from an experiment's resolved config, and a Snakefile parse path without torch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from tradeoffs.pipeline.plan import PLAN_ENV, job_resources, load_plan, plan_cache_path, workflow_plan
from tradeoffs.resources import GROUP_BELOW_S, JobResources


def numerics(n_values: int = 2**20, rotation: str = "none", rotation_size: int = 32, **hardware) -> dict:
    return {
        "kind": "numerics",
        "n_values": n_values,
        "rotation": rotation,
        "rotation_size": rotation_size,
        "hardware": {"device": "cpu", "threads": 0, **hardware},
    }


def test_numerics_memory_and_time_grow_with_the_sample_and_the_rotation():
    small, big = job_resources("numerics", numerics()), job_resources("numerics", numerics(2**24))
    rotated = job_resources("numerics", numerics(2**24, "hadamard", 4096))
    assert small == JobResources(threads=1, mem_mb=1200, runtime=6, gpus=0, group="numerics")
    assert small.mem_mb < big.mem_mb < rotated.mem_mb and small.runtime <= big.runtime <= rotated.runtime
    assert job_resources("numerics", numerics(2**28, "hadamard", 4096)).runtime == 18
    assert big.group == "numerics"  # about 2 s of compute: start-up dominates, so it is grouped
    assert rotated.group is None  # 2 n k flops: well over GROUP_BELOW_S, a job of its own
    assert GROUP_BELOW_S == 10.0


def test_cuda_asks_for_one_gpu_and_is_never_grouped():
    on_gpu = job_resources("numerics", numerics(device="cuda"))
    assert on_gpu.gpus == 1 and on_gpu.group is None
    assert job_resources("lmul", {"hardware": {"device": "cuda"}}) == JobResources(gpus=1, group=None)


def test_data_parallel_training_asks_for_a_gpu_and_a_thread_per_process():
    on_cpu = {"devices": 2, "hardware": {"device": "cpu", "threads": 0}}
    on_gpu = {"devices": 4, "hardware": {"device": "cuda", "threads": 0}}
    cpu, gpu = job_resources("train", on_cpu), job_resources("train", on_gpu)
    assert (cpu.threads, cpu.mem_mb, cpu.gpus, cpu.group) == (2, 4000, 0, None)
    assert (gpu.threads, gpu.mem_mb, gpu.gpus, gpu.group) == (4, 8000, 4, None)
    assert job_resources("train", {"devices": 1, "hardware": {"device": "cuda", "threads": 8}}).threads == 8


def test_a_training_run_gets_wall_time_for_its_planned_flops():
    """Runtime = start-up + margin x counted FLOPs / effective throughput (+ compilation when the run compiles):
    checked by hand for the default run on 2 CPU threads, and a gpt-30m run at 20 tokens per parameter on an
    H100 gets hours, not a fixed hour."""
    from tradeoffs.kinds import train as kind
    from tradeoffs.models import flops_per_token
    from tradeoffs.pipeline.config import load_experiment

    on_cpu = {"devices": 2, "hardware": {"device": "cpu", "threads": 0}}
    config = load_experiment("train", ["devices=2"])  # gpt-200k, 200 steps of 16 x 256 tokens, 5 evaluations
    tokens, windows = 200 * 16 * 256, (200 // 50 + 2) * 64 * 256
    flops = tokens * flops_per_token(config.model, include_lm_head=True)
    flops += windows * flops_per_token(config.model, training=False, include_lm_head=True)
    assert kind.planned_flops(config) == flops
    minutes = kind.START_MINUTES + math.ceil(kind.RUNTIME_MARGIN * flops / (2 * kind.CPU_FP32_FLOPS_PER_THREAD) / 60)
    assert job_resources("train", on_cpu).runtime == minutes
    emulated = load_experiment("train", ["devices=2", "recipe=mxfp4"])  # fake-quantized Linears: a tenth of the rate
    assert (
        kind.effective_flops_per_s(emulated) == 2 * kind.CPU_FLOPS_PER_THREAD == kind.effective_flops_per_s(config) / 10
    )
    gpt_30m = ["model=gpt-30m", "hardware=h100_sxm", "batch_size=32", "recipe=mxfp4"]

    def runtime(*overrides: str) -> int:
        return kind.train_resources(load_experiment("train", [*gpt_30m, *overrides])).runtime

    longest = runtime("steps=77786", "eval_interval=3889")
    assert 6 * 60 < longest < 8 * 60  # 1.26e17 FLOPs at 10 TFLOP/s, twice, and start-up
    assert runtime("steps=7779", "eval_interval=389") < longest / 5
    assert longest - runtime("steps=77786", "eval_interval=3889", "compile_quant=false") == kind.COMPILE_MINUTES


def test_threads_from_hardware_and_a_default_for_kinds_without_a_sizer():
    assert job_resources("numerics", numerics(threads=4)).threads == 4
    assert job_resources("crossover", {"hardware": {"device": "cpu", "threads": 0}}) == JobResources(
        threads=1, mem_mb=2000, runtime=30, gpus=0, group="crossover"
    )


def test_a_retry_asks_for_more_memory_and_time():
    first, third = job_resources("numerics", numerics(), 1), job_resources("numerics", numerics(), 3)
    assert (third.mem_mb, third.runtime) == (3 * first.mem_mb, 3 * first.runtime)
    assert (third.threads, third.gpus, third.group) == (first.threads, first.gpus, first.group)


def test_planned_experiments_carry_their_resources(workflow_dir):
    plan = load_plan("smoke")
    for experiment in plan.experiments:
        assert experiment.resources(2) == job_resources(experiment.kind, experiment.config, 2)


def test_a_cluster_job_reads_the_plan_its_run_pinned(workflow_dir, monkeypatch):
    monkeypatch.delenv(PLAN_ENV, raising=False)
    plan = workflow_plan("smoke", cluster_job=False)  # the run: loads the plan and pins it for its jobs
    assert os.environ[PLAN_ENV] == str(plan_cache_path("smoke"))
    pinned = workflow_dir / "pinned.json"
    raw = json.loads(plan_cache_path("smoke").read_text())
    raw["experiments"] = raw["experiments"][:1]  # as if conf/ had changed since the run was submitted
    pinned.write_text(json.dumps(raw))
    monkeypatch.setenv(PLAN_ENV, str(pinned))
    assert workflow_plan("smoke", cluster_job=True).experiments == plan.experiments[:1]
    assert load_plan("smoke", workflow_dir / "missing.json") == plan  # gone: plan from conf/ as usual
    raw["suite"] = "quick"
    pinned.write_text(json.dumps(raw))
    assert load_plan("smoke", pinned) == plan  # another suite's plan is not taken


def test_reading_a_cached_plan_imports_neither_torch_nor_hydra(workflow_dir):
    load_plan("smoke")  # builds the cache
    code = (
        "import sys; from tradeoffs.pipeline.plan import load_plan, default_suite; import tradeoffs.report; "
        "plan = load_plan('smoke'); plan.experiments[0].resources(); "
        "print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=workflow_dir, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
