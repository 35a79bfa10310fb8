"""Evaluation scores every token exactly once, and segmented evaluation with memory equals a
token-by-token reference."""

import math

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.evaluate import EvalResult, evaluate, token_by_token_nll
from transformer_xl.segment import SegmentSettings


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = TransformerXLConfig(
        vocab_size=50,
        n_layer=2,
        n_head=2,
        d_model=32,
        d_head=16,
        d_inner=64,
        dropout=0.0,
        segment=SegmentSettings(tgt_len=8, mem_len=8),
        **kw,
    )
    return TransformerXLLM(cfg, attn_impl="eager").eval()


def segments(ids, tgt_len):
    """Consecutive ``(x, y)`` segments of ``ids`` ``[B, N]``; the last one may be shorter."""
    n = ids.shape[1] - 1
    return [
        (ids[:, s : min(s + tgt_len, n)], ids[:, s + 1 : min(s + tgt_len, n) + 1])
        for s in range(0, n, tgt_len)
    ]


@pytest.mark.parametrize(
    "keys, tgt_len, mem_len, clamp_len",
    [("mem_len+1", 5, 8, -1), ("mem_len", 3, 6, 4), ("mem_len+1", 7, 7, 3)],
)
def test_segmented_eval_with_same_length_equals_token_by_token(keys, tgt_len, mem_len, clamp_len):
    model = tiny_model(untie_r=True)
    ids = torch.randint(0, 50, (2, 30))
    run = SegmentSettings(mem_len=mem_len, clamp_len=clamp_len, same_length=True, window_keys=keys)
    ref = token_by_token_nll(model, ids, run)
    res = evaluate(model, segments(ids, tgt_len), run)
    assert res.tokens == ref.numel() == 2 * 29
    assert res.nll_sum == pytest.approx(ref.double().sum().item(), rel=1e-5)


def test_full_memory_without_same_length_sees_the_whole_past():
    model = tiny_model()
    ids = torch.randint(0, 50, (3, 25))
    ref = token_by_token_nll(model, ids, settings=model.config.segment.replace(mem_len=100))
    res = evaluate(model, segments(ids, 6), settings=model.config.segment.replace(mem_len=100))
    assert res.nll_sum == pytest.approx(ref.double().sum().item(), rel=1e-5)


def test_mask_counts_only_real_tokens_and_max_tokens_stops_early():
    model = tiny_model()
    ids = torch.randint(0, 50, (2, 21))
    segs = segments(ids, 5)
    ref = token_by_token_nll(
        model, ids, settings=model.config.segment.replace(mem_len=50)
    )  # [2, 20]
    mask_last = torch.tensor([[True] * 5, [True, True, False, False, False]])
    batches = [(x, y, torch.ones_like(x, dtype=torch.bool)) for x, y in segs[:-1]]
    batches.append((*segs[-1], mask_last))
    res = evaluate(model, batches, settings=model.config.segment.replace(mem_len=50))
    expected = ref[:, :15].sum() + ref[0, 15:].sum() + ref[1, 15:17].sum()
    assert res.tokens == 2 * 15 + 5 + 2
    assert res.nll_sum == pytest.approx(expected.item(), rel=1e-5)
    early = evaluate(model, segs, settings=model.config.segment.replace(mem_len=50), max_tokens=15)
    assert early.tokens == 20  # two whole batches of [2, 5]


def test_result_units():
    r = EvalResult(nll_sum=math.log(2) * 10, tokens=10, bits=True)
    assert r.bpc == pytest.approx(1.0) and r.ppl == pytest.approx(2.0)
    assert r.to_dict()["tokens"] == 10 and "bpc" in r.to_dict()
    assert "bpc" not in EvalResult(1.0, 1).to_dict()
    assert model_is_untouched()


def model_is_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    evaluate(
        model,
        segments(torch.randint(0, 50, (1, 12)), 4),
        settings=model.config.segment.replace(mem_len=30),
    )
    return model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "kw",
    [
        dict(mem_len=20, same_length=True),
        dict(mem_len=20, same_length=True, window_keys="mem_len", clamp_len=6),
        dict(mem_len=13, clamp_len=4),
        dict(mem_len=9),
        dict(mem_len=4),  # as long as a segment
        dict(mem_len=4, same_length=True),
    ],
)
@pytest.mark.parametrize("attn_type", [0, 1, 2, 3])
def test_cached_key_evaluation_equals_the_segment_path(kw, attn_type):
    """mem_len >= tgt_len: evaluate() reads with cached keys/values; same numbers."""
    from transformer_xl.evaluate import use_cached_keys

    model = tiny_model(attn_type=attn_type)
    with torch.no_grad():  # sharper attention than the init's, so that the memory matters
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn_like(p) * 0.3)
    ids = torch.randint(0, 50, (2, 40))
    batches = segments(ids, 4)
    run = model.config.segment.replace(**kw)
    assert use_cached_keys(model, run, 4)
    fast = evaluate(model, batches, run)
    slow = evaluate(model, batches, run, cached_keys=False)
    assert fast.tokens == slow.tokens == 2 * 39
    assert fast.nll_sum == pytest.approx(slow.nll_sum, rel=1e-5)
    assert fast.nll_sum != pytest.approx(
        evaluate(model, batches, settings=model.config.segment.replace(mem_len=2)).nll_sum, rel=1e-3
    )


def test_segment_path_is_kept_where_memory_is_not_longer():
    from transformer_xl.evaluate import use_cached_keys

    model = tiny_model()
    assert not use_cached_keys(model, SegmentSettings(mem_len=7), 8)
    assert not use_cached_keys(model, SegmentSettings(mem_len=0), 8)
    assert use_cached_keys(model, SegmentSettings(mem_len=8), 8)
    assert use_cached_keys(model, SegmentSettings(mem_len=9), 8)


@pytest.mark.parametrize("attn_type", [0, 1, 2, 3])
def test_cached_key_evaluation_under_bf16_autocast(attn_type):
    """Under bf16 autocast the cached-key path keeps a bf16 cache and scores like the bf16
    segment path and like float32 (to bf16's precision)."""
    from transformer_xl.model.incremental import StreamingLM

    model = tiny_model(attn_type=attn_type)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn_like(p) * 0.3)
    ids = torch.randint(0, 50, (2, 40))
    batches = segments(ids, 4)
    bf16 = torch.autocast("cpu", torch.bfloat16)
    fast = evaluate(
        model, batches, settings=model.config.segment.replace(mem_len=12), autocast=bf16
    )
    slow = evaluate(
        model,
        batches,
        settings=model.config.segment.replace(mem_len=12),
        autocast=bf16,
        cached_keys=False,
    )
    full = evaluate(model, batches, settings=model.config.segment.replace(mem_len=12))
    assert fast.tokens == slow.tokens == full.tokens == 2 * 39
    assert fast.nll_sum == pytest.approx(full.nll_sum, rel=2e-2)
    assert fast.nll_sum == pytest.approx(slow.nll_sum, rel=2e-2)
    with bf16:
        stream = StreamingLM(model, 2, settings=model.config.segment.replace(mem_len=12))
    assert stream.kv.buf.dtype == torch.bfloat16
