"""Greedy decoding under reduction orders: each order changes only the summation order (fp64 results agree to
1e-12), the divergence statistics on constructed sequences, determinism, and what the precisions do."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from tradeoffs.data import DataConfig, load_dataset
from tradeoffs.errors import ConfigError
from tradeoffs.models import GPT, ModelConfig
from tradeoffs.nondeterminism import (
    NondeterminismConfig,
    SplitK,
    agreement_by_position,
    batch_groups,
    cast_model,
    compare_prompt,
    first_divergence,
    greedy_decode,
    parse_order,
    prompt_windows,
    run_study,
    split_attention,
    split_linear,
    split_matmul,
    storage_dtypes,
)
from tradeoffs.nondeterminism.splitk import split_addmm

TINY = ModelConfig(d_model=32, n_layer=2, n_head=4, n_kv_head=2, d_ff=64, context_length=32, bias=True)
EVERY_ORDER = [
    "batch=1",
    "batch=4",  # 6 prompts: the second batch is topped up with two other prompts
    "batch=8,shuffle=1",
    "split_k=1",
    "split_k=3",
    "split_k=100",  # more parts than any contraction has terms
    "split_k=5,partials=rounded",
    "threads=2",
    "attention=native",
]


def tiny_model(seed: int = 0, config: ModelConfig = TINY) -> GPT:
    torch.manual_seed(seed)
    return GPT(config).eval()


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> torch.Tensor:
    dataset = load_dataset(DataConfig(max_bytes=100_000), cache_dir=tmp_path_factory.mktemp("data"))
    return prompt_windows(dataset.splits["validation"], count=6, length=10, seed=3)


# --- divergence detection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "other", "expected"),
    [
        ([5, 6, 7, 8], [5, 6, 7, 8], None),
        ([5, 6, 7, 8], [9, 6, 7, 8], 0),
        ([5, 6, 7, 8], [5, 6, 7, 9], 3),
        ([5, 6, 7, 8], [5, 1, 2, 3], 1),
        ([5, 6, 7, 8], [5, 6], 2),  # a proper prefix parts where it ends
        ([5, 6], [5, 6, 7, 8], 2),
        ([5, 6, 7], [5, 0], 1),  # a difference before the shorter one ends
        ([], [], None),
        ([], [4], 0),
    ],
)
def test_first_divergence_finds_the_first_differing_position(reference, other, expected):
    assert first_divergence(reference, other) == expected
    assert first_divergence(torch.tensor(reference, dtype=torch.int64), torch.tensor(other)) == expected


def test_agreement_counts_prompts_still_identical_through_each_position():
    assert agreement_by_position([None, 0, 2, 3], 4) == [0.75, 0.75, 0.5, 0.25]
    assert agreement_by_position([None, None], 3) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        agreement_by_position([], 3)


def test_compare_prompt_reads_the_logits_where_the_contexts_still_agree():
    reference_logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5], [1.0, 0.0, 0.0]])
    logits = reference_logits.clone()
    logits[0, 2] += 1e-3  # a difference that changes no argmax
    logits[1] = torch.tensor([0.0, 1.4, 1.6])  # the flip: argmax 1 -> 2
    logits[2] = torch.tensor([-50.0, 50.0, 0.0])  # after the divergence: another context, ignored
    tokens = logits.argmax(-1)
    result = compare_prompt(reference_logits.argmax(-1), reference_logits, tokens, logits)
    assert result.position == 1
    assert result.logit_difference == pytest.approx(0.6)
    assert result.reference_margin == pytest.approx(0.5)
    assert result.max_logit_difference == pytest.approx(0.6)
    assert result.min_reference_margin == pytest.approx(0.5)
    same = compare_prompt(reference_logits.argmax(-1), reference_logits, reference_logits.argmax(-1), reference_logits)
    assert (same.position, same.logit_difference, same.reference_margin) == (None, None, None)
    assert same.max_logit_difference == 0.0


# --- reduction orders change only the order -------------------------------------------------------------------


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 11, 50])
def test_split_products_equal_the_unsplit_ones_in_fp64(parts):
    generator = torch.Generator().manual_seed(parts)
    a = torch.randn(2, 3, 5, 11, dtype=torch.float64, generator=generator)
    b = torch.randn(2, 3, 11, 4, dtype=torch.float64, generator=generator)
    weight = torch.randn(6, 11, dtype=torch.float64, generator=generator)
    bias = torch.randn(6, dtype=torch.float64, generator=generator)
    for round_partials in (False, True):
        torch.testing.assert_close(split_matmul(a, b, parts, round_partials), a @ b, rtol=0, atol=1e-12)
        torch.testing.assert_close(
            split_linear(a, weight, bias, parts, round_partials), F.linear(a, weight, bias), rtol=0, atol=1e-12
        )
        torch.testing.assert_close(
            split_addmm(bias[:4], a[0, 0], b[0, 0], parts, round_partials, beta=0.5, alpha=2.0),
            torch.addmm(bias[:4], a[0, 0], b[0, 0], beta=0.5, alpha=2.0),
            rtol=0,
            atol=1e-12,
        )


def test_split_sums_of_integers_are_exact_and_low_precision_accumulates_in_fp32():
    a = torch.randint(-8, 8, (4, 64)).float()
    b = torch.randint(-8, 8, (64, 3)).float()
    assert torch.equal(split_matmul(a, b, 5), a @ b)
    x, w = a.bfloat16(), b.T.bfloat16()
    out = split_linear(x, w, None, 4)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, (x.float() @ w.float().T).bfloat16())  # fp32 partials, one rounding


@pytest.mark.parametrize("parts", [1, 3, 8])
@pytest.mark.parametrize("mask", ["causal", "bool", "float", "none"])
def test_split_attention_equals_sdpa_in_fp64(parts, mask):
    generator = torch.Generator().manual_seed(parts)
    query = torch.randn(2, 4, 5, 8, dtype=torch.float64, generator=generator)
    key = torch.randn(2, 2, 7 if mask != "causal" else 5, 8, dtype=torch.float64, generator=generator)
    value = torch.randn_like(key)
    kwargs = {"is_causal": mask == "causal", "scale": 0.3, "enable_gqa": True}
    if mask == "bool":
        kwargs["attn_mask"] = torch.rand(5, 7, generator=generator) > 0.3
        kwargs["attn_mask"][:, 0] = True  # every query sees at least one key
    if mask == "float":
        kwargs["attn_mask"] = torch.randn(5, 7, dtype=torch.float64, generator=generator)
    expected = F.scaled_dot_product_attention(query, key, value, **kwargs)
    torch.testing.assert_close(split_attention(query, key, value, **kwargs, parts=parts), expected, rtol=0, atol=1e-12)


def test_split_k_mode_splits_every_linear_and_attention_of_the_model(prompts):
    model = tiny_model()
    with torch.no_grad(), SplitK(3) as mode:
        model(prompts)
    assert mode.calls == {"linear": 4 * TINY.n_layer + 1, "attention": TINY.n_layer}


def test_every_reduction_order_gives_the_reference_logits_in_fp64(prompts):
    model = cast_model(tiny_model(), "fp64")
    reference_order = parse_order("batch=3,threads=1,attention=math", "reference")
    reference = greedy_decode(model, prompts, 6, reference_order, seed=0)
    assert reference.logits.dtype == torch.float64
    for spec in EVERY_ORDER:
        run = greedy_decode(model, prompts, 6, parse_order(spec, "perturbations", reference_order), seed=0)
        assert torch.equal(run.tokens, reference.tokens), spec
        torch.testing.assert_close(run.logits, reference.logits, rtol=0, atol=1e-12, msg=spec)


def test_orders_change_the_arithmetic_below_fp64(prompts):
    """The fp64 test above would pass trivially if an order changed nothing: in fp32 each one that reorders a
    sum on this CPU moves some logit (bit-identical results are possible for batch and thread counts, whose
    effect depends on the BLAS library)."""
    model = cast_model(tiny_model(), "fp32")
    reference_order = parse_order("batch=3,threads=1,attention=math", "reference")
    reference = greedy_decode(model, prompts, 6, reference_order, seed=0)
    for spec in ("split_k=3", "split_k=100", "attention=native"):
        run = greedy_decode(model, prompts, 6, parse_order(spec, "perturbations", reference_order), seed=0)
        assert not torch.equal(run.logits, reference.logits), spec


def test_batches_keep_each_prompt_once_and_fill_the_last_batch_with_others():
    order = parse_order("batch=4", "reference")
    assert batch_groups(6, order, seed=0) == [([0, 1, 2, 3], 4), ([4, 5, 0, 1], 2)]
    assert batch_groups(2, order, seed=0) == [([0, 1, 0, 1], 2)]
    shuffled = batch_groups(6, parse_order("batch=4,shuffle=1", "reference"), seed=0)
    kept = [prompt for rows, count in shuffled for prompt in rows[:count]]
    assert sorted(kept) == list(range(6)) and kept != list(range(6))
    assert all(len(rows) == 4 for rows, _ in shuffled)


def test_prompts_are_seeded_windows_of_the_split(tmp_path):
    dataset = load_dataset(DataConfig(max_bytes=100_000), cache_dir=tmp_path)
    tokens = dataset.splits["validation"]
    first, again = (prompt_windows(tokens, 5, 12, seed=1) for _ in range(2))
    assert first.shape == (5, 12) and first.dtype == torch.int64 and torch.equal(first, again)
    assert not torch.equal(first, prompt_windows(tokens, 5, 12, seed=2))
    windows = {bytes(tokens[i : i + 12].tolist()) for i in range(len(tokens) - 12)}
    assert all(bytes(row.tolist()) in windows for row in first)


# --- precisions -----------------------------------------------------------------------------------------------


def test_layercast_stores_bf16_and_computes_in_fp32(prompts):
    model = tiny_model()
    layercast = cast_model(model, "layercast")
    assert storage_dtypes(layercast) == {torch.bfloat16}
    assert storage_dtypes(model) == {torch.float32}  # the original is untouched
    rounded = cast_model(model, "fp32")
    with torch.no_grad():
        for parameter in rounded.parameters():
            parameter.copy_(parameter.bfloat16().float())
        logits, _ = layercast(prompts)
        expected, _ = rounded(prompts)
    assert torch.equal(logits, expected)


def test_tied_embeddings_stay_tied_under_layercast(prompts):
    model = tiny_model(config=replace(TINY, tie_embeddings=True))
    layercast = cast_model(model, "layercast")
    assert layercast.lm_head.weight.dtype == torch.float32
    assert torch.equal(layercast.lm_head.weight, layercast.wte.weight)
    assert torch.equal(layercast.wte.weight, model.wte.weight.bfloat16().float())


# --- the study ------------------------------------------------------------------------------------------------


def small_study(**overrides) -> NondeterminismConfig:
    settings = {
        "prompts": 6,
        "prompt_length": 10,
        "new_tokens": 8,
        "precisions": ["fp32", "bf16"],
        "reference": "batch=3,threads=1,attention=math",
        "perturbations": ["repeat", "batch=2", "split_k=4", "split_k=4,partials=rounded"],
        **overrides,
    }
    return NondeterminismConfig(**settings)


def test_the_study_is_deterministic_and_its_rows_are_tidy(prompts):
    config = small_study()
    first = run_study(tiny_model(), prompts, config)
    second = run_study(tiny_model(), prompts, config)
    rows, again = first.metric_rows(), second.metric_rows()
    assert len(rows) == len(again) > 0
    for row, other in zip(rows, again, strict=True):
        assert (row.name, row.unit, row.labels) == (other.name, other.unit, other.labels)
        assert row.value == other.value or (math.isnan(row.value) and math.isnan(other.value))
    names = {row.name for row in rows}
    assert {"first_divergence_position", "identical_fraction", "agreement_at_position"} <= names
    assert {(r.labels["precision"], r.labels["perturbation"]) for r in rows if r.name == "identical_fraction"} == {
        (precision, label)
        for precision in config.precisions
        for label in ("repeat", "batch=2", "split_k=4", "split_k=4,partials=rounded")
    }
    agreement = [r for r in rows if r.name == "agreement_at_position" and r.labels["perturbation"] == "split_k=4"]
    assert sorted({r.labels["position"] for r in agreement}) == list(range(config.new_tokens))
    for comparison in first.comparisons:
        if comparison.perturbation == "repeat":  # the control: the same order again changes nothing on a CPU
            assert comparison.identical_fraction == comparison.bitwise_identical_fraction == 1.0
    assert set(first.timings()) >= {"study_s", "fp32/reference", "bf16/split_k=4"}


def test_precisions_under_split_k(prompts):
    """Not the paper's claim (the claims engine judges that from the study's runs): what split-K does to the
    logits of each precision here. With partial sums kept in fp32, a bf16 model's products are exact and their
    short sums nearly so, so reordering them rarely changes a bf16 rounding; fp32 sums always round, by about
    one fp32 ulp. Rounding each partial sum to bf16 (as reduced-precision split-K reductions do) moves bf16
    logits by whole bf16 ulps, far more than fp32 ever moves."""
    config = small_study(
        precisions=["fp32", "fp16", "bf16", "layercast"], perturbations=["split_k=4", "split_k=4,partials=rounded"]
    )
    result = run_study(tiny_model(config=replace(TINY, d_model=64)), prompts, config)
    largest = {
        (c.precision, c.perturbation): max(p.max_logit_difference for p in c.prompts) for c in result.comparisons
    }
    identical = {(c.precision, c.perturbation): c.identical_fraction for c in result.comparisons}
    print("largest logit difference", largest, "identical fraction", identical)
    assert 0 < largest["fp32", "split_k=4"] < 1e-5  # fp32 sums are reordered: their rounding moves
    assert largest["layercast", "split_k=4"] < 1e-5
    assert largest["bf16", "split_k=4,partials=rounded"] > 100 * largest["fp32", "split_k=4,partials=rounded"]
    assert largest["bf16", "split_k=4,partials=rounded"] > largest["fp16", "split_k=4,partials=rounded"] > 0


# --- configuration --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"precisions": ["fp8"]}, "precisions: invalid value 'fp8'"),
        ({"precisions": []}, "precisions"),
        ({"precisions": ["fp32", "fp32"]}, "twice"),
        ({"perturbations": ["split=2"]}, "keys batch, shuffle, split_k"),
        ({"perturbations": ["batch=0"]}, "batch must be >= 1"),
        ({"perturbations": ["shuffle=2"]}, "shuffle must be 0 or 1"),
        ({"perturbations": ["threads=two"]}, "threads must be an integer"),
        ({"perturbations": ["attention=flash"]}, "valid choices: native, math"),
        ({"perturbations": ["partials=rounded"]}, "needs split_k"),
        ({"perturbations": ["batch=3"]}, "changes nothing of the reference"),
        ({"perturbations": ["split_k=2", "split_k=2"]}, "twice"),
        ({"perturbations": []}, "perturbations"),
        ({"reference": "blas=cublaslt"}, "CUDA BLAS"),
        ({"device": "tpu"}, "device: invalid value 'tpu'"),
        ({"split": "dev"}, "split: invalid value 'dev'"),
        ({"new_tokens": 0}, "new_tokens"),
    ],
)
def test_bad_settings_name_the_key_and_the_choices(overrides, message):
    with pytest.raises(ConfigError, match=message):
        small_study(**overrides)


def test_too_long_a_generation_is_refused_before_decoding(prompts):
    with pytest.raises(ConfigError, match="exceeds the model's context_length 32"):
        run_study(tiny_model(), prompts, small_study(new_tokens=30))


def test_cuda_orders_are_skipped_without_cuda(prompts):
    result = run_study(tiny_model(), prompts, small_study(precisions=["fp32"], perturbations=["blas=cublaslt"]))
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the order runs (see the GPU test)")
    assert result.comparisons == [] and result.metric_rows() == []
    assert [(s.precision, s.perturbation) for s in result.skipped] == [("fp32", "blas=cublaslt")]
    assert "CUDA" in result.skipped[0].reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_orders_give_the_reference_logits_in_fp64(prompts):
    config = small_study(
        precisions=["fp64"], perturbations=["blas=cublaslt", "blas=cublas", "split_k=3"], device="cuda"
    )
    result = run_study(tiny_model(), prompts, config)
    for comparison in result.comparisons:
        assert comparison.identical_fraction == 1.0
        assert max(p.max_logit_difference for p in comparison.prompts) < 1e-12


def test_a_hugging_face_llama_is_split_and_order_invariant_in_fp64(prompts):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tradeoffs.models import HFCausalLM

    torch.manual_seed(0)
    llama = LlamaConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        attn_implementation="sdpa",
    )
    model = HFCausalLM(LlamaForCausalLM(llama).eval())
    with torch.no_grad(), SplitK(3) as mode:
        model(prompts)
    assert mode.calls == {"linear": 7 * llama.num_hidden_layers + 1, "attention": llama.num_hidden_layers}
    config = small_study(precisions=["fp64"], perturbations=["batch=1", "shuffle=1", "split_k=3", "attention=native"])
    for comparison in run_study(model, prompts, config).comparisons:
        assert comparison.identical_fraction == 1.0
        assert max(p.max_logit_difference for p in comparison.prompts) < 1e-12, comparison.perturbation
