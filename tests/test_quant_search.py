"""Searched minifloat weights (tradeoffs.quant.search): the split and clipping the search picks on constructed data,
its invariants and bad input; the new weight formats' grids; the quant kind running each new spec on a trained tiny
model."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import QUANT_SMALL, copy_workflow, train_tiny_source
from tradeoffs.errors import ConfigError
from tradeoffs.evaluate import bits_per_weight
from tradeoffs.formats import FormatSpec, fake_quant, get_format
from tradeoffs.formats.codes import decode
from tradeoffs.models import GPT, ModelConfig
from tradeoffs.pipeline.config import load_experiment
from tradeoffs.pipeline.runner import run_experiment
from tradeoffs.quant import FormatSearch, candidate_elements, get_spec, method_config, quantize_, search_quantize
from tradeoffs.report import write_figure, write_table_file
from tradeoffs.report.claims import evaluate_claims, load_claims
from tradeoffs.report.claims.advice import advice
from tradeoffs.report.claims.verdicts import HARDWARE_ABSENT, INCONCLUSIVE, NOT_IN_SUITE
from tradeoffs.results import collect

FP4_CHANNEL = FormatSpec(name="fp4_channel", element="fp4_e2m1", granularity="channel")
E3M0_POSITIVE = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
E1M2_POSITIVE = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]


def _rows(kind: str, rows: int = 32, columns: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(rows, columns, generator=generator)
    if kind == "uniform":
        return torch.rand(rows, columns, generator=generator) * 2 - 1
    grid = torch.tensor({"e3m0": E3M0_POSITIVE, "e1m2": E1M2_POSITIVE}[kind])
    values = grid[torch.randint(len(grid), (rows, columns), generator=generator)]
    values[:, 0] = grid[-1]  # every row reaches the grid's top: absmax scales of exactly one
    signs = torch.randint(2, (rows, columns), generator=generator) * 2 - 1
    return values * signs * torch.rand(rows, 1, generator=generator).add(0.5)


def test_the_candidates_are_every_split_of_the_width_and_their_grids():
    assert candidate_elements(4) == ["e1m2", "e2m1", "e3m0"]
    assert candidate_elements(6) == ["e1m4", "e2m3", "e3m2", "e4m1", "e5m0"]
    for fmt, positive in ((get_format("fp4_e3m0"), E3M0_POSITIVE), (FormatSpec(element="e1m2", special="none"),
                                                                     E1M2_POSITIVE)):  # fmt: skip
        element = fmt.element_format
        values = decode(torch.arange(16, dtype=torch.uint8), element)
        assert sorted(set(values.abs().tolist())) == positive, fmt
    assert get_format("int6").element_format.max_value == 31 and get_format("int6").granularity == "channel"


@pytest.mark.parametrize(
    ("kind", "best"), [("gaussian", "e2m1"), ("uniform", "e1m2"), ("e3m0", "e3m0"), ("e1m2", "e1m2")]
)
def test_the_search_picks_the_known_best_split(kind, best):
    weight = _rows(kind)
    found = search_quantize(weight, FP4_CHANNEL, FormatSearch())
    assert found.element_shares()[best] == 1.0
    errors = {
        element: float(((fake_quant(weight, dataclasses.replace(FP4_CHANNEL, element=element, special="none")) - weight)
                        ** 2).sum())
        for element in candidate_elements(4)
    }  # fmt: skip
    assert min(errors, key=errors.get) == best  # unclipped round-to-nearest agrees
    assert found.error <= errors[best] * (1 + 1e-6)  # the ratio 1 is among the candidates
    if kind in ("e3m0", "e1m2"):  # values on the grid: exact at ratio 1
        assert found.error == pytest.approx(0.0, abs=1e-9)
        assert torch.equal(found.clip_ratio, torch.ones(len(weight)))


def test_per_channel_choices_follow_each_rows_distribution():
    weight = torch.cat([_rows("e3m0", rows=8), _rows("uniform", rows=8)])
    per_row = search_quantize(weight, FP4_CHANNEL, FormatSearch(element_per="channel"))
    assert per_row.element_index.tolist() == [2] * 8 + [0] * 8
    per_layer = search_quantize(weight, FP4_CHANNEL, FormatSearch(element_per="layer"))
    assert len(set(per_layer.element_index.tolist())) == 1
    assert per_row.error < per_layer.error
    assert per_row.selector_bits == 2 and per_layer.selector_bits == 0
    one_ratio = search_quantize(weight, FP4_CHANNEL, FormatSearch(clip_per="layer"))
    assert len(set(one_ratio.clip_ratio.tolist())) == 1 and one_ratio.error >= per_layer.error


def test_clipping_lowers_the_gaussian_error_and_groups_keep_their_scales():
    weight = _rows("gaussian", rows=16, columns=512)
    only_e2m1 = FormatSearch(elements=("e2m1",))
    unclipped = search_quantize(weight, FP4_CHANNEL, dataclasses.replace(only_e2m1, clip_ratios=(1.0,)))
    assert torch.equal(unclipped.weight, fake_quant(weight, FP4_CHANNEL))
    clipped = search_quantize(weight, FP4_CHANNEL, only_e2m1)
    assert clipped.error < 0.95 * unclipped.error and float((clipped.clip_ratio < 1).float().mean()) > 0.5
    groups = dataclasses.replace(FP4_CHANNEL, granularity="block", block_size=32)
    grouped = search_quantize(weight, groups, dataclasses.replace(only_e2m1, clip_ratios=(1.0,)))
    assert torch.equal(grouped.weight, fake_quant(weight, groups))


def test_the_output_objective_weighs_rows_by_the_hessian():
    weight = torch.cat([_rows("e3m0", rows=4), _rows("gaussian", rows=4)])
    plain = search_quantize(weight, FP4_CHANNEL, FormatSearch(element_per="channel"))
    isotropic = search_quantize(weight, FP4_CHANNEL, FormatSearch(element_per="channel", objective="output"),
                                hessian=3.0 * torch.eye(256))  # fmt: skip
    assert torch.equal(plain.weight, isotropic.weight) and isotropic.error == pytest.approx(3 * plain.error, rel=1e-5)
    h = torch.diag(torch.linspace(0.01, 10, 256))
    weighted = search_quantize(weight, FP4_CHANNEL, FormatSearch(element_per="channel", objective="output"), hessian=h)
    delta = (weighted.weight - weight, plain.weight - weight)
    assert ((delta[0] @ h) * delta[0]).sum() <= ((delta[1] @ h) * delta[1]).sum() * (1 + 1e-6)


@pytest.mark.parametrize(
    ("fmt", "search", "match"),
    [
        (FP4_CHANNEL, {"clip_ratios": (1.0, 0.0)}, r"search.clip_ratios"),
        (FP4_CHANNEL, {"elements": ("e2m3",)}, r"search.elements.*differ from the 4 bits.*e1m2, e2m1, e3m0"),
        (FP4_CHANNEL, {"elements": ("int4",)}, r"search.elements.*not a minifloat"),
        (FP4_CHANNEL, {"element_per": "block"}, r"search.element_per.*layer.*channel"),
        (FP4_CHANNEL, {"objective": "loss"}, r"search.objective.*weight.*output"),
        ("mxfp4", {}, r"search: weight format 'mxfp4' has e8m0"),
        ("fp4_e2m1", {}, r"search.clip_per=channel.*one scale per tensor"),
    ],
)
def test_bad_searches_name_the_key(fmt, search, match):
    with pytest.raises(ConfigError, match=match):
        search_quantize(torch.randn(4, 32), fmt, FormatSearch(**search))


def test_the_output_objective_needs_a_hessian():
    with pytest.raises(ConfigError, match=r"search.objective=output needs the layer's input Hessian"):
        search_quantize(torch.randn(4, 32), FP4_CHANNEL, FormatSearch(objective="output"))
    spec = get_spec("W4A16", weight="fp4_e2m1", weight_granularity="channel")
    with pytest.raises(ConfigError, match=r"calibration: SearchConfig needs calibration token ids"):
        quantize_(_gpt(), method_config("search", spec=spec, search={"objective": "output"}))
    with pytest.raises(ConfigError, match=r"unknown search keys \['ratio'\]"):
        method_config("search", spec=spec, search={"ratio": 0.9})


def _gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(d_model=64, n_layer=2, n_head=4, n_kv_head=4, d_ff=128, context_length=16)).eval()


def test_quantize_searches_every_layer_and_counts_the_selector_bits():
    model, calibration = _gpt(), torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))
    spec = get_spec("W4A8", weight="fp4_e2m1", activation="fp8_e4m3", weight_granularity="group", group_size=32)
    config = method_config("search", spec=spec, search={"element_per": "channel", "objective": "output"})
    result = quantize_(model, config, calibration)
    assert sorted(result.searched) == sorted(result.bits) and len(result.bits) == 8
    expected = [4 + 32 / 32 + 2 / linear.in_features for name, linear in model.named_modules() if name in result.bits]
    assert bits_per_weight(model) == pytest.approx(sum(expected) / len(expected))
    for name, linear in model.named_modules():
        if name in result.bits:
            assert torch.equal(linear.weight, result.searched[name].weight)


# ---------------------------------------------------------------------------------------- the quant kind
W6 = ["method.spec.name=W6A16", "method.spec.weight_granularity=channel"]
INT4_G32 = ["method.spec.weight=int4_asym", "method.spec.weight_granularity=group", "method.spec.group_size=32"]
CHANNEL = ["method.spec.weight_granularity=channel"]
KIND_RUNS = {  # name -> study, overrides
    "fp6_e3m2": ("fp6_weights", [*W6, "method.spec.weight=fp6_e3m2"]),
    "fp6_e2m3_gptq": ("fp6_weights", [*W6, "method=gptq", "method.spec.weight=fp6_e2m3"]),
    "int6": ("fp6_weights", [*W6, "method.spec.weight=int6"]),
    "int4_g32": ("fp6_weights", INT4_G32),
    "e3m0": ("fp4_weights", ["method.spec.weight=fp4_e3m0", *CHANNEL]),
    "int4": ("fp4_weights", ["method.spec.weight=int4", *CHANNEL]),
    "searched": ("fp4_weights", ["method=search", "method.spec.weight=fp4_e2m1", *CHANNEL]),
    "searched_w4a8": (
        "fp4_weights",
        [
            "method=search",
            "method.spec.name=W4A8",
            "method.spec.weight=fp4_e2m1",
            "method.spec.activation=fp8_e4m3",
            "method.spec.weight_granularity=group",
            "method.spec.group_size=32",
            "method.search.objective=output",
            "method.search.element_per=channel",
        ],
    ),
}


@pytest.fixture(scope="module")
def kind_runs(tmp_path_factory):
    """({name: {(metric, element label): value}}, {name: run id}, the collected table)."""
    root = copy_workflow(tmp_path_factory.mktemp("search"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("TRADEOFFS_ROOT", raising=False)
        train, source = train_tiny_source(root)
        got, ids, paths = {}, {}, [source]
        for name, (study, overrides) in KIND_RUNS.items():
            config = load_experiment("quant", [f"study={study}", *QUANT_SMALL, *overrides])
            config.source = train
            ids[name] = f"quant/{name}"
            paths.append(root / f"results/quant/{name}/result.json")
            record = run_experiment(ids[name], config, paths[-1], job_threads=1, inputs=(source,))
            assert record.status == "ok", (name, record.message)
            got[name] = {(m.name, m.labels.get("element")): m.value for m in record.metrics}
        yield got, ids, collect(paths)


def test_the_quant_kind_runs_each_new_spec(kind_runs):
    got, _, _ = kind_runs
    for name, metrics in got.items():
        assert math.isfinite(metrics[("loss_change", None)]) and metrics[("kl", None)] >= 0, name
    per_block = {64: 192 * 64 + 64 * 64 + 256 * 64, 256: 64 * 256}  # weights per input width (qkv, proj, up; down)
    scale_bits = sum(32 / width * n for width, n in per_block.items()) / sum(per_block.values())
    assert got["int6"][("bits_per_weight", None)] == pytest.approx(6 + scale_bits)  # weighted by parameters
    assert got["searched"][("bits_per_weight", None)] == got["int4"][("bits_per_weight", None)]  # per-layer choice
    for name in ("searched", "searched_w4a8"):
        shares = {e: got[name][("search_element_share", e)] for e in ("e1m2", "e2m1", "e3m0")}
        assert sum(shares.values()) == pytest.approx(1.0)
        assert 0.5 <= got[name][("search_clip_ratio", None)] <= 1.0
    assert got["searched_w4a8"][("calibration_tokens", None)] == 4 * 32
    assert got["searched"][("calibration_tokens", None)] == 0
    with pytest.raises(ConfigError, match=r"method.search.clip_per"):
        load_experiment("quant", ["method=search", "method.search.clip_per=row"])


def test_the_weight_format_products_draw_from_the_collected_table(kind_runs, tmp_path):
    _, _, table = kind_runs
    parquet = tmp_path / "results.parquet"
    table.to_parquet(parquet, index=False)
    write_figure("quant_weight_formats", parquet, tmp_path / "formats.png")
    assert (tmp_path / "formats.png").stat().st_size > 10_000
    for name in ("quant_fp6_weights", "quant_fp4_weights"):
        write_table_file(name, parquet, tmp_path / f"{name}.csv")
    fp4 = (tmp_path / "quant_fp4_weights.csv").read_text()
    assert "searched FP4" in fp4 and "searched FP4 (output MSE, split per channel)" in fp4 and "FP4 E3M0" in fp4
    assert "FP6 E3M2" in (tmp_path / "quant_fp6_weights.csv").read_text()


def test_the_claims_read_the_runs(kind_runs):
    _, ids, table = kind_runs
    claims = {c.id: c for c in load_claims()}
    fp6, fp4 = evaluate_claims(table, [claims["fp6-weights"], claims["fp4-vs-int4"]])
    parts = {p.part: p.decision for p in fp6.parts}
    assert parts["int4-loses-more"].reason != NOT_IN_SUITE
    assert set(parts["int4-loses-more"].run_ids) == {ids["int4_g32"], ids["fp6_e3m2"]}  # judged reads only
    parts = {p.part: p.decision for p in fp4.parts}
    assert ids["searched"] in parts["searched-matches-int4"].run_ids
    assert ids["searched_w4a8"] not in parts["searched-matches-int4"].run_ids  # output objective: not the claim's
    hardware = parts["fpga-hardware-cost"]
    assert hardware.verdict == INCONCLUSIVE and hardware.reason == HARDWARE_ABSENT
    assert "not decidable here: it needs FPGA synthesis" in hardware.test
    (part,) = [p for p in claims["fp4-vs-int4"].parts if p.id == "fpga-hardware-cost"]
    assert advice(part, hardware, table, ["quick"]) == [f"evidence outside this pipeline: {part.params['reason']}"]
