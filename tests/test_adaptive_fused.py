"""The fused adaptive softmax (``model/adaptive.py``: one pass per cluster, memory-lean backward)
against the plain reference: full-vocabulary log-probabilities gathered at the targets."""

from __future__ import annotations

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.model import adaptive as A

CONFIGS = [
    dict(),  # one cluster
    dict(cutoffs=(50, 120), div_val=2, tie_projs=(False, True, True)),
    dict(cutoffs=(50, 120), div_val=1, tie_projs=(False, True, True)),
    dict(cutoffs=(50, 120), div_val=4, tie_weight=False),
]


def _model(**kw) -> TransformerXLLM:
    cfg = TransformerXLConfig(
        vocab_size=300, n_layer=1, n_head=2, d_model=32, d_head=16, d_inner=40, dropout=0.0, **kw
    )
    return TransformerXLLM(cfg)


def _reference_nll(model, hidden, target):
    params = model.crit.clusters(model.word_emb)
    lp = A.adaptive_log_probs(hidden, params, model.crit.cluster_weight, model.crit.cluster_bias)
    return -lp.gather(1, target[:, None]).squeeze(1)


def _fused_nll(model, hidden, target):
    params = model.crit.clusters(model.word_emb)
    return A.adaptive_nll(
        hidden, target, params, model.crit.cluster_weight, model.crit.cluster_bias
    )


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_nll_and_gradients_equal_the_reference(kw, dtype):
    torch.manual_seed(0)
    model = _model(**kw).to(dtype)
    hidden = torch.randn(77, 32, dtype=dtype, requires_grad=True)
    target = torch.randint(0, 300, (77,))
    target[:3] = torch.tensor([0, 299, 120])  # the ends of the clusters
    upstream = torch.rand(77, dtype=dtype)
    leaves = [hidden, *model.parameters()]
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    want, got = _reference_nll(model, hidden, target), _fused_nll(model, hidden, target)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want, **tol)
    gw = torch.autograd.grad((want * upstream).sum(), leaves, allow_unused=True)
    gg = torch.autograd.grad((got * upstream).sum(), leaves, allow_unused=True)
    for a, b in zip(gg, gw, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **tol)
    with torch.no_grad():  # the no-gradient path (blocks of rows)
        torch.testing.assert_close(_fused_nll(model, hidden, target), want.detach(), **tol)


def test_cluster_function_passes_gradcheck():
    torch.manual_seed(1)
    z = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    xw = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    xb = torch.randn(2, dtype=torch.float64, requires_grad=True)
    col = torch.tensor([0, 6, 7, 8, 3, 7, 1, 8, 2])  # 7 and 8: the two extra columns

    def f(*args):  # gradcheck runs backward many times: the copying mode
        return A._ClusterNLL.apply(*args, col, False)

    assert torch.autograd.gradcheck(f, (z, w, b, xw, xb))
    one = lambda *a: A._ClusterNLL.apply(*a, None, None, col % 7, False)  # noqa: E731
    assert torch.autograd.gradcheck(one, (z, w, b))
    # the in-place mode (the model's) gives the same gradients
    g = torch.rand(9, dtype=torch.float64)
    for mode_a, mode_b in zip(
        torch.autograd.grad((A._ClusterNLL.apply(z, w, b, xw, xb, col, True) * g).sum(), (z, w, b)),
        torch.autograd.grad((f(z, w, b, xw, xb) * g).sum(), (z, w, b)),
        strict=True,
    ):
        torch.testing.assert_close(mode_a, mode_b, atol=0, rtol=0)


def test_fused_backward_runs_once_only():
    model = _model(cutoffs=(50, 120), div_val=2)
    hidden = torch.randn(10, 32, requires_grad=True)
    loss = _fused_nll(model, hidden, torch.randint(0, 300, (10,))).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward only once"):
        loss.backward()


@pytest.mark.parametrize("kw", CONFIGS[1:])
def test_bf16_autocast_keeps_the_loss_in_float32(kw):
    torch.manual_seed(2)
    model = _model(**kw)
    hidden = torch.randn(64, 32, requires_grad=True)
    target = torch.randint(0, 300, (64,))
    want = _reference_nll(model, hidden, target)
    with torch.autocast("cpu", torch.bfloat16):
        got = _fused_nll(model, hidden, target)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)  # bf16 matmuls, fp32 softmax
    got.sum().backward()
    for p in model.parameters():  # fp32 master weights get fp32 gradients
        assert p.grad is None or p.grad.dtype == torch.float32
    assert hidden.grad.dtype == torch.float32


def test_no_vocabulary_sized_tensor_is_saved_for_backward():
    """Training keeps one ``[n, V_i]`` tensor per cluster (plain autograd keeps two or more)."""
    model = _model(cutoffs=(50, 120), div_val=2, tie_projs=(False, True, True))
    hidden = torch.randn(40, 32, requires_grad=True)
    target = torch.randint(0, 300, (40,))
    wide = []

    def pack(t):
        if t.dim() == 2 and t.shape[0] >= 10 and t.shape[1] >= 50:
            wide.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _fused_nll(model, hidden, target)
    fused = list(wide)
    wide.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _reference_nll(model, hidden, target)
    # the head: 50 + 2 columns, padded to a multiple of 16 (see adaptive._packed)
    assert [s for s in fused if s[0] == 40] == [torch.Size([40, 64])]
    assert len(wide) > len(fused)
