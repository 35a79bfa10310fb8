"""The attention kernels' functions against the eager reference, on random inputs (CPU:
FlexAttention unfused, Triton in its interpreter). The whole model per path and per ``attn_impl``:
``tests/test_attention_registry.py``."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from transformer_xl.model.attention import attention_mask, rel_shift
from transformer_xl.model.kernels import flex as flex_mod
from transformer_xl.model.kernels.reference import (
    distance_index,
    position_scores,
    relative_attention_reference,
)
from transformer_xl.model.kernels.registry import KERNELS
from transformer_xl.segment import SegmentSettings

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None,
    reason="triton is not installed (pip install triton)",
)
IMPLS = ["flex", pytest.param("triton", marks=needs_triton), "chunked"]
ATTEND_IMPLS = [*IMPLS, "sdpa", "score_attend"]


@pytest.fixture(autouse=True)
def _flex_uncompiled(monkeypatch):
    monkeypatch.setattr(flex_mod, "COMPILE", False)  # compiling takes a minute on CPU


def _inputs(B=2, H=2, T=19, M=21, D=20, dtype=torch.float32, grad=False):
    K = M + T
    t = {
        "q": torch.randn(B, H, T, D, dtype=dtype),
        "pq": torch.randn(B, H, T, D, dtype=dtype),
        "k": torch.randn(B, H, K, D, dtype=dtype),
        "v": torch.randn(B, H, K, D, dtype=dtype),
        "r": torch.randn(H, K + 1, D, dtype=dtype),  # by distance 0..K
    }
    return {n: x.requires_grad_(grad) for n, x in t.items()}


def _model_pos_scores(pq, r):
    """The model's way: scores against distances K..0, then the relative shift."""
    return rel_shift(torch.einsum("bhid,hjd->bhij", pq, r.flip(1)))


def _has_backward(impl: str) -> bool:
    return KERNELS[impl].backward_devices in (None, ("cpu",))  # flex: none on CPU


MASKS = {  # the window of the same-length rule (mem_len 12 + 1 keys); None: causal only
    "causal": dict(window=None),
    "same_length": dict(window=SegmentSettings(mem_len=12, same_length=True).window),
}


def test_distance_index_matches_a_loop():
    idx = distance_index(3, 5, 2)
    for i in range(3):
        for j in range(5):
            assert idx[i, j] == min(max(2 + i - j, 0), 5)


def test_position_scores_equal_the_models_relative_shift():
    t = _inputs(dtype=torch.float64)
    T, K = t["q"].shape[2], t["k"].shape[2]
    mask = attention_mask(T, K - T)
    got = position_scores(t["pq"], t["r"], K, K - T)
    want = _model_pos_scores(t["pq"], t["r"])
    torch.testing.assert_close(got.masked_fill(mask, 0), want.masked_fill(mask, 0))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mask_kind", list(MASKS))
@pytest.mark.parametrize("with_pos", [True, False])
def _attend(impl, *args):
    return KERNELS[impl].attend(*args, scale=args[0].shape[-1] ** -0.5, dropout_p=0.0)


def _per_row_mask(mask, batch):
    """``[T, K]`` -> ``[B, 1, T, K]`` (the cached-key form), row 1 also hiding its oldest keys."""
    rows = mask[None, None].repeat(batch, 1, 1, 1)
    rows[1, ..., :3] = True
    return rows


@pytest.mark.parametrize("impl", ATTEND_IMPLS)
@pytest.mark.parametrize("mask_kind", [*MASKS, "per_row"])
@pytest.mark.parametrize("with_pos", [True, False])
def test_attend_form_equals_eager(impl, mask_kind, with_pos):
    t = _inputs(grad=True)
    T, K = t["q"].shape[2], t["k"].shape[2]
    mask = attention_mask(T, K - T, **MASKS["causal" if mask_kind == "per_row" else mask_kind])
    if mask_kind == "per_row":
        mask = _per_row_mask(mask, t["q"].shape[0])
    pos = _model_pos_scores(t["pq"], t["r"]) if with_pos else None
    args = (t["q"], t["k"], t["v"], pos, mask)
    want = _attend("eager", *args)
    with torch.no_grad():
        got = _attend(impl, *args)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    if not _has_backward(impl):
        return
    got = _attend(impl, *args)
    g = torch.randn_like(want)
    leaves = [t["q"], t["k"], t["v"], t["pq"], t["r"]]
    gw = torch.autograd.grad(want, leaves, g, allow_unused=True, retain_graph=True)
    gg = torch.autograd.grad(got, leaves, g, allow_unused=True)
    for a, b in zip(gg, gw, strict=True):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, atol=5e-5, rtol=5e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mask_kind", list(MASKS))
def test_relative_attention_computes_the_position_term_itself(impl, mask_kind, monkeypatch):
    from transformer_xl.model.kernels import triton_attn

    monkeypatch.setattr(triton_attn, "BACKWARD_CHUNK", 8)  # several recomputation chunks
    t = _inputs(grad=True)
    T, K = t["q"].shape[2], t["k"].shape[2]
    mask = attention_mask(T, K - T, **MASKS[mask_kind])
    want = _attend("eager", t["q"], t["k"], t["v"], _model_pos_scores(t["pq"], t["r"]), mask)
    scale = t["q"].shape[-1] ** -0.5  # the model's scale
    args = (t["q"], t["pq"], t["k"], t["v"], t["r"], mask)
    torch.testing.assert_close(
        relative_attention_reference(*args, scale=scale), want, atol=1e-5, rtol=1e-5
    )
    relative = KERNELS[impl].relative
    with torch.no_grad():
        got = relative(*args, scale=scale)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    if not _has_backward(impl):
        return
    got = relative(*args, scale=scale)
    g = torch.randn_like(want)
    leaves = [t["q"], t["pq"], t["k"], t["v"], t["r"]]
    for a, b in zip(
        torch.autograd.grad(got, leaves, g), torch.autograd.grad(want, leaves, g), strict=True
    ):
        torch.testing.assert_close(a, b, atol=5e-5, rtol=5e-5)


# ------------------------------------------------------------- score_attend (CPU training path)
def _stock_attend(q, k, v, pos, mask, scale, p):
    """The composition SDPA's math path runs: scores, masked softmax, stock dropout, @ v."""
    s = ((q @ k.transpose(-1, -2) + pos) * scale).masked_fill(mask, float("-inf"))
    probs = torch.softmax(s.to(torch.promote_types(s.dtype, torch.float32)), -1).to(v.dtype)
    return torch.nn.functional.dropout(probs, p, training=p > 0) @ v


@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("mask_kind", list(MASKS))
def test_score_attend_equals_stock_composition(p, mask_kind):
    """Values and all four gradients (q, k, v, position scores), with the same dropout draw."""
    from transformer_xl.model.kernels.score_attend import score_attend

    t = _inputs(dtype=torch.float64, grad=True)
    mask = attention_mask(19, 21, **MASKS[mask_kind])
    outs = []
    for f in (_stock_attend, lambda *a: score_attend(*a[:5], scale=a[5], dropout_p=a[6])):
        pos = _model_pos_scores(t["pq"], t["r"])  # a strided view, as the model passes it
        torch.manual_seed(3)
        out = f(t["q"], t["k"], t["v"], pos, mask, 0.2, p)
        g = torch.autograd.grad(out, (t["q"], t["k"], t["v"], t["pq"], t["r"]), out.cos())
        outs.append((out, g))
    (want, gw), (got, gg) = outs
    torch.testing.assert_close(got, want)
    for a, b, name in zip(gg, gw, ("q", "k", "v", "pq", "r"), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_score_attend_under_bf16_autocast_stays_bf16():
    """Under CPU autocast the products run in bfloat16 (no float32 copies of q, k, v, as SDPA's
    math path makes) and the result is close to float32's."""
    from transformer_xl.model.kernels.score_attend import score_attend

    t = _inputs(grad=True)
    pos = _model_pos_scores(t["pq"], t["r"])
    mask = attention_mask(19, 21, **MASKS["causal"])
    want = _stock_attend(t["q"], t["k"], t["v"], pos, mask, 0.2, 0.0)
    args = [x.detach().bfloat16().requires_grad_() for x in (t["q"], t["k"], t["v"], pos)]
    with torch.autocast("cpu", torch.bfloat16):
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            got = score_attend(*args, mask, scale=0.2, dropout_p=0.0)
            got.backward(torch.ones_like(got))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.detach(), atol=0.05, rtol=0.05)
    casts = [e for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes[0]]
    assert not casts, f"float32 casts inside the attention: {[e.input_shapes for e in casts]}"


def test_score_attend_without_a_position_term_equals_eager():
    """attn_type 2/3 (no position term): values and the gradients of q, k, v."""
    from transformer_xl.model.kernels.score_attend import score_attend

    t = _inputs(dtype=torch.float64, grad=True)
    mask = attention_mask(19, 21, **MASKS["same_length"])
    want = _stock_attend(t["q"], t["k"], t["v"], 0.0, mask, 0.2, 0.0)
    got = score_attend(t["q"], t["k"], t["v"], None, mask, scale=0.2, dropout_p=0.0)
    torch.testing.assert_close(got, want)
    leaves = (t["q"], t["k"], t["v"])
    for a, b in zip(
        torch.autograd.grad(got, leaves, got.cos()), torch.autograd.grad(want, leaves, want.cos()),
        strict=True,
    ):  # fmt: skip
        torch.testing.assert_close(a, b)
