"""The tiled softmax loss (``model/tiled_loss.py``) and the adaptive softmax through it, against
the plain reference: a float64 log-softmax of the whole logits, gathered at the targets."""

from __future__ import annotations

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.devices import cast_for_inference
from transformer_xl.model import adaptive as A
from transformer_xl.model.tiled_loss import tiled_nll

CONFIGS = [
    dict(),  # one cluster
    dict(cutoffs=(50, 120), div_val=2, tie_projs=(False, True, True)),
    dict(cutoffs=(50, 120), div_val=1, tie_projs=(False, True, True)),
    dict(cutoffs=(50, 120), div_val=4, tie_weight=False),
    dict(cutoffs=(7, 11, 200), div_val=2),  # clusters narrower than a tile and wider
]


def _reference(z, parts, col):
    w = torch.cat([p[0] for p in parts]).double()
    b = torch.cat([p[1] for p in parts]).double()
    return -torch.log_softmax(z.double() @ w.t() + b, -1).gather(1, col[:, None]).squeeze(1)


def _leaves(dtype, n, d, widths, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, dtype=dtype, generator=g).requires_grad_()
    parts = [
        (torch.randn(m, d, dtype=dtype, generator=g).requires_grad_(),
         torch.randn(m, dtype=dtype, generator=g).requires_grad_())
        for m in widths
    ]  # fmt: skip
    col = torch.randint(0, sum(widths), (n,), generator=g)
    col[:2] = torch.tensor([0, sum(widths) - 1])
    return z, parts, col


@pytest.mark.parametrize("widths", [(23,), (23, 3), (5, 9, 2)])
@pytest.mark.parametrize("tiles", [(4, 5), (37, 23), (1000, 1000), (3, 1)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiled_nll_and_gradients_equal_the_reference(widths, tiles, dtype):
    """Row and column counts that the tiles do not divide, tiles larger than the problem,
    several parts (the head and its tail-cluster columns)."""
    z, parts, col = _leaves(dtype, 37, 8, widths)
    leaves = [z, *(t for p in parts for t in p)]
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-5)
    want = _reference(z, parts, col)
    got = tiled_nll(z, parts, col, rows=tiles[0], cols=tiles[1])
    assert got.dtype == dtype
    torch.testing.assert_close(got, want.to(dtype), **tol)
    upstream = torch.rand(37, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad((got * upstream.to(dtype)).sum(), leaves),
        torch.autograd.grad((want * upstream).sum(), leaves),
        strict=True,
    ):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b.to(dtype), **tol)
    with torch.no_grad():
        torch.testing.assert_close(tiled_nll(z, parts, col, rows=tiles[0], cols=tiles[1]),
                                   want.detach().to(dtype), **tol)  # fmt: skip


def test_tiled_nll_passes_gradcheck():
    z, parts, col = _leaves(torch.float64, 9, 5, (7, 2), seed=1)
    flat = [t for p in parts for t in p]

    def f(z, w0, b0, w1, b1):
        return tiled_nll(z, [(w0, b0), (w1, b1)], col, rows=4, cols=3)

    assert torch.autograd.gradcheck(f, (z, *flat))


def test_large_logits_stay_finite():
    """The online log-sum-exp rescales: logits far beyond exp's float32 range."""
    z, parts, col = _leaves(torch.float32, 16, 4, (40, 3), seed=2)
    with torch.no_grad():
        parts[0][1][5] += 300.0  # one huge logit in the first tile
        parts[1][1][1] += 900.0  # a larger one in a later tile
    got = tiled_nll(z, parts, col, rows=5, cols=8)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), _reference(z, parts, col), atol=1e-4, rtol=1e-5)


def test_no_logits_block_is_saved_for_backward():
    """Only the inputs and the ``[n]`` log-normaliser are kept: no ``[n, V]`` tensor."""
    z, parts, col = _leaves(torch.float32, 40, 8, (300, 3))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        tiled_nll(z, parts, col, rows=16, cols=64)
    shapes = {tuple(t.shape) for t in saved}
    assert shapes == {(40, 8), (40,), (300, 8), (300,), (3, 8), (3,)}


def _model(dtype, **kw) -> TransformerXLLM:
    cfg = TransformerXLConfig(
        vocab_size=300, n_layer=1, n_head=2, d_model=32, d_head=16, d_inner=40, dropout=0.0, **kw
    )
    torch.manual_seed(0)
    return TransformerXLLM(cfg).to(dtype)


def _nll(model, hidden, target, tiled):
    params = model.crit.clusters(model.word_emb)
    return A.adaptive_nll(
        hidden, target, params, model.crit.cluster_weight, model.crit.cluster_bias, tiled=tiled
    )


def _targets(n, seed=3):
    target = torch.randint(0, 300, (n,), generator=torch.Generator().manual_seed(seed))
    target[:6] = torch.tensor([0, 299, 120, 119, 50, 49])  # the ends of the clusters
    return target


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adaptive_loss_tiled_equals_the_reference_and_the_row_blocks(kw, dtype):
    """Every cluster (head with its tail columns, tails with projections, div_val 1 slices of
    one table, untied weights): values and all gradients, tiled and row blocks alike."""
    model = _model(dtype, **kw)
    hidden = torch.randn(77, 32, dtype=dtype, requires_grad=True)
    target = _targets(77)
    leaves = [hidden, *model.parameters()]
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    params = model.crit.clusters(model.word_emb)
    lp = A.adaptive_log_probs(hidden, params, model.crit.cluster_weight, model.crit.cluster_bias)
    want = -lp.gather(1, target[:, None]).squeeze(1)
    upstream = torch.rand(77, dtype=dtype)
    gw = torch.autograd.grad((want * upstream).sum(), leaves, allow_unused=True)
    for tiled in (True, False):
        got = _nll(model, hidden, target, tiled)
        torch.testing.assert_close(got, want, **tol)
        gg = torch.autograd.grad((got * upstream).sum(), leaves, allow_unused=True)
        for a, b in zip(gg, gw, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, **tol)
        with torch.no_grad():
            torch.testing.assert_close(_nll(model, hidden, target, tiled), want.detach(), **tol)


@pytest.mark.parametrize("kw", CONFIGS[1:3])
def test_adaptive_loss_tiled_under_bf16_autocast(kw):
    """bf16 products, float32 log-sum-exp and gradients: close to float32, float32 results."""
    model = _model(torch.float32, **kw)
    hidden = torch.randn(64, 32, requires_grad=True)
    target = _targets(64)
    want = _nll(model, hidden, target, False)
    g_want = torch.autograd.grad(want.sum(), [hidden, *model.parameters()], allow_unused=True)
    with torch.autocast("cpu", torch.bfloat16):
        got = _nll(model, hidden, target, True)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)
    g_got = torch.autograd.grad(got.sum(), [hidden, *model.parameters()], allow_unused=True)
    for a, b in zip(g_got, g_want, strict=True):
        if a is not None:
            assert a.dtype == torch.float32
            torch.testing.assert_close(a, b, atol=0.02, rtol=0.05)


def test_adaptive_loss_tiled_with_weights_cast_once_to_bf16():
    """The inference path: a bf16 model (cast_for_inference), the loss still in float32."""
    model = _model(torch.float32, cutoffs=(50, 120), div_val=2, tie_projs=(False, True, True))
    hidden = torch.randn(64, 32)
    target = _targets(64)
    with torch.no_grad():
        want = _nll(model, hidden, target, False)
        cast_for_inference(model, "bf16")
        got = _nll(model, hidden.bfloat16(), target, True)
        blocks = _nll(model, hidden.bfloat16(), target, False)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)
    torch.testing.assert_close(got, blocks, atol=0.03, rtol=0.01)


def test_bad_tile_sizes_are_refused():
    z, parts, col = _leaves(torch.float32, 4, 3, (5,))
    with pytest.raises(ValueError, match="positive"):
        tiled_nll(z, parts, col, rows=0)
