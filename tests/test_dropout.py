"""model/dropout.py: bitwise the stock dropout(relu(x)) (values and gradients), nothing saved
beyond its output."""

import pytest
import torch
import torch.nn.functional as F

from transformer_xl.model.dropout import relu_dropout


def _run(fn, x, seed, p):
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = fn(x, p)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
    y.backward(g)
    return y.detach(), x.grad


def _stock(t, p):
    return F.dropout(torch.relu(t), p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_equal_to_stock_bitwise(dtype, p):
    x = torch.randn(3, 37, 129, dtype=torch.float64).to(dtype)
    y1, g1 = _run(relu_dropout, x, 7, p)
    y2, g2 = _run(_stock, x, 7, p)
    assert torch.equal(y1, y2)
    assert torch.equal(g1, g2)
    y3, _ = _run(relu_dropout, x, 8, p)  # another seed, another mask: the test can fail
    assert not torch.equal(y1, y3)


def test_saves_only_its_output():
    x = torch.randn(4, 64, 256, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = relu_dropout(x, 0.1)
    big = [t for t in saved if t.numel() > 1]  # besides its output: a 0-dim scale
    assert len(big) == 1 and big[0].data_ptr() == y.data_ptr()
    assert sum(t.numel() for t in saved) == y.numel() + 1
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _stock(x, 0.1)
    assert sum(t.element_size() * t.numel() for t in saved) >= 2 * 4 * x.numel()  # the stock cost


def test_identity_and_edges():
    x = torch.randn(5, 6)
    assert torch.equal(relu_dropout(x, 0.3, training=False), torch.relu(x))
    assert torch.equal(relu_dropout(x, 0.0), torch.relu(x))
    assert torch.equal(relu_dropout(x, 1.0), torch.zeros_like(x))
