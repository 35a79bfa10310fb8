"""The rest of the training step: fused optimizers equal the for-loop ones, LAMB reads no
tensor back to the host, and chunked attention equals the unchunked reference."""

from __future__ import annotations

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.run.config import TrainConfig
from transformer_xl.segment import SegmentSettings
from transformer_xl.train import optim
from transformer_xl.train.optim import Lamb, build_optimizer, fast_impl


def _model() -> TransformerXLLM:
    torch.manual_seed(0)
    cfg = TransformerXLConfig(
        vocab_size=50, n_layer=1, n_head=2, d_model=16, d_head=8, d_inner=24, dropout=0.0
    )
    return TransformerXLLM(cfg)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adagrad"])
def test_fused_optimizer_equals_the_for_loop_one(name, monkeypatch):
    cfg = TrainConfig(optimizer=name, lr=1e-2, weight_decay=0.01)
    fast, slow = _model(), _model()
    opt = build_optimizer(fast, cfg)
    assert all(g["fused"] for g in opt.param_groups)
    monkeypatch.setattr(optim, "fast_impl", lambda params: {})
    ref = build_optimizer(slow, cfg)
    assert not any(g.get("fused") for g in ref.param_groups)
    x = torch.randint(0, 50, (2, 6))
    for _ in range(3):
        for m, o in ((fast, opt), (slow, ref)):
            m(x, labels=x).loss.backward()
            o.step()
            o.zero_grad()
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_fast_impl_only_for_plain_tensors():
    assert fast_impl([torch.nn.Parameter(torch.zeros(2))]) == {"fused": True}
    assert fast_impl([]) == {}
    assert fast_impl([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]) == {"fused": True}


def test_lamb_step_reads_nothing_back_to_the_host(monkeypatch):
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = Lamb([p], lr=0.1, weight_decay=0.01)
    p.grad = torch.randn(4, 3)

    def no_item(self):
        raise AssertionError("host sync: Tensor.item() in the optimizer step")

    monkeypatch.setattr(torch.Tensor, "item", no_item)
    before = p.detach().clone()
    opt.step()
    opt.step()
    assert not torch.equal(p.detach(), before)


def _pair(dropatt: float = 0.0):
    cfg = TransformerXLConfig(
        vocab_size=40,
        n_layer=2,
        n_head=2,
        d_model=16,
        d_head=8,
        d_inner=24,
        dropout=0.0,
        dropatt=dropatt,
        segment=SegmentSettings(mem_len=7),
    )
    torch.manual_seed(3)
    ref = TransformerXLLM(cfg, attn_impl="eager")
    fast = TransformerXLLM(cfg, attn_impl="chunked")
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@pytest.mark.parametrize("dropatt", [0.0, 0.2])
def test_chunked_attention_equals_unchunked(dropatt, monkeypatch):
    from transformer_xl.model.kernels import chunked

    monkeypatch.setattr(chunked, "QUERY_BLOCK", 4)  # 11 queries: blocks of 4, 4, 3
    monkeypatch.setattr(chunked.chunked_relative_attention, "__kwdefaults__", {"block": 4})
    monkeypatch.setattr(chunked.chunked_attend, "__kwdefaults__", {"block": 4})
    ref, fast = _pair(dropatt)
    x = torch.randint(0, 40, (3, 23))
    losses = {}
    for name, m in (("ref", ref), ("fast", fast)):
        torch.manual_seed(9)  # the same dropout masks (the same draws, in the same order)
        m.train(dropatt > 0)
        mems, total = None, 0.0
        for s in (0, 11):
            out = m(x[:, s : s + 11], labels=x[:, s + 1 : s + 12], mems=mems)
            mems, total = out.mems, total + out.loss
        total.backward()
        losses[name] = total.detach()
    if dropatt:  # per-block dropout draws differ from one whole draw: only check it trains
        assert torch.isfinite(losses["fast"])
        assert all(p.grad is not None for p in fast.parameters() if p.requires_grad)
        return
    torch.testing.assert_close(losses["fast"], losses["ref"], atol=1e-5, rtol=1e-5)
    for (n, a), b in zip(fast.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_chunked_attention_never_keeps_the_whole_position_scores():
    from transformer_xl.model.kernels.chunked import chunked_relative_attention

    B, H, T, M, Dh = 2, 2, 12, 5, 4
    K = M + T
    cq, pq = (torch.randn(B, H, T, Dh, requires_grad=True) for _ in range(2))
    k, v = (torch.randn(B, H, K, Dh, requires_grad=True) for _ in range(2))
    r = torch.randn(H, K + 1, Dh, requires_grad=True)
    mask = torch.ones(T, K, dtype=torch.bool).triu(M + 1)
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t.shape) or t, lambda t: t):
        out = chunked_relative_attention(cq, pq, k, v, r, mask, scale=0.5, block=4)
    assert not any(len(s) == 4 and s[2] == T and s[3] >= K for s in seen), seen
    out.sum().backward()  # recomputed per block
    from transformer_xl.model.kernels.reference import relative_attention_reference

    ref = relative_attention_reference(cq, pq, k, v, r, mask, scale=0.5)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="block=0"):
        chunked_relative_attention(cq, pq, k, v, r, mask, scale=0.5, block=0)
