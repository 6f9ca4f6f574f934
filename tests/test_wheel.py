"""The library as a package anyone can import: a wheel built from the sources, installed (not editable) into a
fresh virtual environment and used from an empty directory with a clean environment, finds every preset it
needs inside itself and never reads the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # builds a wheel and imports torch in a fresh interpreter: about 30 s

# Run in the fresh environment. An audit hook records every file or directory the process opens or lists in the
# checkout (its .venv, which lends the dependencies, apart), so a library call that reads conf/, the sources or
# anything else of the checkout is named, even one that would have found what it looked for.
USER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys

    CHECKOUT, LENDER = sys.argv[1], sys.argv[2]
    touched = []

    def audit(event, args):
        if event in ("open", "os.listdir", "os.scandir", "os.chdir", "glob.glob") and args and args[0] is not None:
            path = os.path.realpath(os.fsdecode(args[0])) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
            if path.startswith(CHECKOUT + os.sep) and not (path + os.sep).startswith(LENDER + os.sep):
                touched.append(f"{event} {path}")

    sys.addaudithook(audit)

    import torch
    from torch import nn

    import tradeoffs
    from tradeoffs.bench.hardware import hardware_table
    from tradeoffs.bench.targets import target
    from tradeoffs.bench.timing import BenchConfig
    from tradeoffs.data import DataConfig, default_cache_dir, load_dataset
    from tradeoffs.evaluate import get_protocol, score
    from tradeoffs.fit import FitOptions, chinchilla_loss, fit_chinchilla, power_law
    from tradeoffs.formats import fake_quant, format_names, get_format
    from tradeoffs.models import GPT, ModelConfig
    from tradeoffs.presets import load_preset
    from tradeoffs.quant import RTNConfig, get_spec, quantize_

    torch.manual_seed(0)
    out = {"file": tradeoffs.__file__, "formats": format_names()}
    x = torch.randn(64, 64)
    y = fake_quant(x, "mxfp4")
    out["mxfp4"] = {"shape": list(y.shape), "finite": bool(y.isfinite().all()),
                    "relative_error": float((y - x).norm() / x.norm()), "block_size": get_format("mxfp4").block_size}

    config = ModelConfig(d_model=48, n_layer=1, n_head=2, n_kv_head=2, d_ff=64, context_length=16)
    model = GPT(config).eval()
    tokens = torch.randint(0, config.vocab_size, (256,))
    before = score(model, tokens.numpy(), get_protocol("rolling", 16)).loss
    result = quantize_(model, RTNConfig(get_spec("W4A16")))
    after = score(model, tokens.numpy(), get_protocol("rolling", 16)).loss
    out["gpt"] = {"quantized": len(result.bits), "bits": max(result.bits.values()), "loss": [before, after]}

    try:
        mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64)).eval()
        plain = quantize_(mlp, RTNConfig(get_spec("W8A16")))
        out["sequential"] = {"quantized": len(plain.bits), "finite": bool(mlp(x).isfinite().all())}
    except Exception as error:
        out["sequential"] = {"error": f"{type(error).__name__}: {error}"}

    n = [1e6, 3e6, 1e7, 3e7, 1e8, 3e8] * 3
    d = [2e7] * 6 + [1e8] * 6 + [5e8] * 6
    truth = dict(E=1.7, A=400.0, B=1000.0, alpha=0.34, beta=0.28)
    chinchilla = fit_chinchilla(n, d, chinchilla_loss(n, d, **truth), options=FitOptions(n_bootstrap=10))
    power = power_law([1.0, 2.0, 4.0, 8.0], [3.0 * v**-0.5 for v in (1.0, 2.0, 4.0, 8.0)])
    out["fit"] = {"chinchilla": chinchilla.status, "alpha": chinchilla.value("alpha"),
                  "power": power.status, "exponent": power.value("exponent")}

    table = hardware_table()
    out["hardware"] = {name: hw.device for name, hw in table.items()}
    out["h100_bf16"] = table["h100_sxm"].peak_tflops["bf16"]
    out["bench"] = BenchConfig(**load_preset("bench", "default")).repeats
    out["target"] = target("qdq_of_copy").low

    dataset = load_dataset(DataConfig(max_bytes=50_000))
    out["data"] = {"cache": str(default_cache_dir()), "train_tokens": int(dataset.splits["train"].size)}
    out["touched"] = touched
    print(json.dumps(out))
    """
)


def _site_packages(venv: Path) -> Path:
    """The purelib directory of the virtual environment `venv` (created by this interpreter's version)."""
    relative = Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    return venv / relative


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of the project, built from a copy of what a wheel is made of (pyproject.toml, README.md, src/), so
    the build writes nothing into the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", wheels,
         source],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("tradeoffs-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """What the user script reports after the wheel is installed in a fresh venv and run from an empty directory."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "tradeoffs/presets/format/mxfp4.yaml" in names and "tradeoffs/bench/targets.yaml" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = _site_packages(venv)
    lender = Path(sysconfig.get_paths()["purelib"])
    # A .pth line adds the checkout's site-packages for the dependencies; that directory's own .pth files (the
    # editable install's path to src/) are not processed, so the checkout's package cannot leak in.
    (site / "dependencies.pth").write_text(f"{lender}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", site, wheel],
        check=True, capture_output=True, text=True,
    )  # fmt: skip

    empty = tmp_path / "empty"
    empty.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.defpath, "HOME": str(home), "LANG": "C.UTF-8"}
    python = venv / "bin" / "python"
    run = subprocess.run(
        [python, "-c", USER_SCRIPT, str(ROOT.resolve()), str(lender.resolve())],
        cwd=empty, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    report["venv"], report["home"] = str(venv.resolve()), str(home.resolve())
    return report


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    assert Path(installed["file"]).resolve().is_relative_to(installed["venv"]), installed["file"]


def test_nothing_of_the_checkout_is_read(installed):
    assert installed["touched"] == []


def test_named_formats_and_fake_quant(installed):
    assert {"mxfp4", "nvfp4", "int8", "fp8_e4m3"} <= set(installed["formats"])
    mxfp4 = installed["mxfp4"]
    assert mxfp4["shape"] == [64, 64] and mxfp4["finite"] and mxfp4["block_size"] == 32
    assert 0 < mxfp4["relative_error"] < 0.2  # 4-bit elements: a visible but bounded error


def test_quantize_a_gpt_with_a_named_spec_and_score_it(installed):
    gpt = installed["gpt"]
    assert gpt["quantized"] > 0 and 4 <= gpt["bits"] < 5  # int4 weights plus their scales
    before, after = gpt["loss"]
    assert after == pytest.approx(before, rel=0.05) and after != before


def test_quantize_a_plain_sequential_of_linears(installed):
    assert installed["sequential"].get("quantized") == 2, installed["sequential"]
    assert installed["sequential"]["finite"]


def test_fits(installed):
    fit = installed["fit"]
    assert fit["chinchilla"] == "ok" and fit["alpha"] == pytest.approx(0.34, abs=0.02)
    assert fit["power"] == "ok" and fit["exponent"] == pytest.approx(-0.5, abs=1e-9)


def test_hardware_bench_and_targets(installed):
    assert {"cpu": "cpu", "h100_sxm": "cuda"}.items() <= installed["hardware"].items()
    assert installed["h100_bf16"] > 900 and installed["bench"] == 3 and installed["target"] == 40.0


def test_datasets_are_cached_outside_any_project(installed):
    assert installed["data"]["cache"] == str(Path(installed["home"]) / ".cache" / "tradeoffs" / "data")
    assert installed["data"]["train_tokens"] > 0
