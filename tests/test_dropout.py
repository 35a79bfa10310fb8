"""model/dropout.py: bitwise the stock dropout (values and gradients), one bool mask saved."""

import pytest
import torch
import torch.nn.functional as F

from transformer_xl.model.dropout import Dropout, dropout, relu_dropout


def _run(fn, x, seed, p):
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = fn(x, p)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_equal_to_stock_bitwise(dtype, p):
    x = torch.randn(3, 37, 129, dtype=torch.float64).to(dtype)
    pairs = [
        (lambda t, q: dropout(t, q), lambda t, q: F.dropout(t, q)),
        (lambda t, q: relu_dropout(t, q), lambda t, q: F.dropout(torch.relu(t), q)),
    ]
    for ours, stock in pairs:
        y1, g1 = _run(ours, x, 7, p)
        y2, g2 = _run(stock, x, 7, p)
        assert torch.equal(y1, y2)
        assert torch.equal(g1, g2)
        # a different seed gives a different mask: the test can fail
        y3, _ = _run(ours, x, 8, p)
        assert not torch.equal(y1, y3)


def test_only_a_bool_mask_is_saved():
    x = torch.randn(4, 64, 256, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        relu_dropout(x, 0.1)
    assert [t.dtype for t in saved] == [torch.bool]
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.dropout(torch.relu(x), 0.1)
    assert sum(t.element_size() * t.numel() for t in saved) >= 2 * 4 * x.numel()  # the stock cost


def test_identity_and_edges():
    x = torch.randn(5, 6)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert torch.equal(relu_dropout(x, 0.3, training=False), torch.relu(x))
    m = Dropout(0.2)
    m.eval()
    assert m(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
