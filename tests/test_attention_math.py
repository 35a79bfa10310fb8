"""The tricky attention math against naive float64 references."""

import math

import pytest
import torch

from transformer_xl import TransformerXLConfig
from transformer_xl.model.attention import (
    PositionTerms,
    RelativeAttention,
    attention_mask,
    rel_shift,
    relative_distances,
    sinusoid,
)
from transformer_xl.model.kernels.registry import resolve_attention
from transformer_xl.segment import SegmentSettings


@pytest.mark.parametrize("T,M", [(1, 0), (4, 0), (4, 3), (5, 9), (7, 2)])
def test_rel_shift_matches_naive_gather(T, M):
    K = M + T
    x = torch.randn(2, 3, T, K + 1, dtype=torch.float64)
    out = rel_shift(x)
    assert out.shape == (2, 3, T, K)
    for i in range(T):
        for j in range(M + i + 1):  # visible keys only: distance M + i - j >= 0
            dist = M + i - j
            assert torch.equal(out[:, :, i, j], x[:, :, i, K - dist])


@pytest.mark.parametrize("T,M,pad", [(1, 0, 3), (4, 3, 1), (5, 9, 16), (7, 2, 2)])
def test_rel_shift_with_padding_columns_matches_naive_gather(T, M, pad):
    """Extra columns after distance 0 (score_columns' padding) change nothing visible."""
    K = M + T
    x = torch.randn(2, 3, T, K + 1 + pad, dtype=torch.float64)
    out = rel_shift(x, K)
    assert out.shape == (2, 3, T, K) and out.data_ptr() == x.data_ptr() + T * x.element_size()
    for i in range(T):
        for j in range(M + i + 1):
            assert torch.equal(out[:, :, i, j], x[:, :, i, K - (M + i - j)])
    # a non-contiguous input is made contiguous first
    y = x.transpose(0, 1).contiguous().transpose(0, 1)
    torch.testing.assert_close(rel_shift(y, K).tril(M), out.tril(M), atol=0, rtol=0)
    with pytest.raises(ValueError, match="cannot hold"):
        rel_shift(x, K + pad + 1)


def test_score_columns_are_multiples_of_16_and_not_powers_of_two():
    from transformer_xl.model.attention import score_columns

    for klen in range(1, 3000):
        n = score_columns(klen)
        if klen + 1 < 64:
            assert n == klen + 1
        else:
            assert n >= klen + 1 and n % 16 == 0 and n & (n - 1) != 0 and n - (klen + 1) < 32


def test_rel_shift_is_a_view():
    x = torch.randn(2, 2, 3, 8)
    assert rel_shift(x).data_ptr() == x.data_ptr() + 3 * x.element_size()


def test_sinusoid_formula():
    pos = torch.tensor([0.0, 1.0, 7.0, 300.0])
    d = 6
    out = sinusoid(pos, d)
    for a, p in enumerate(pos.tolist()):
        for k in range(d // 2):
            f = 1.0 / 10000 ** (2 * k / d)
            assert out[a, k].item() == pytest.approx(math.sin(p * f), abs=1e-5)
            assert out[a, d // 2 + k].item() == pytest.approx(math.cos(p * f), abs=1e-5)


def test_relative_distances_and_clamp():
    assert relative_distances(4, -1).tolist() == [4, 3, 2, 1, 0]
    assert relative_distances(4, 2).tolist() == [2, 2, 2, 1, 0]


def authors_torch_mask(qlen, mlen, mem_len, same_length):
    """The authors' PyTorch / HF formula (masked where 1), written out with triu/tril."""
    klen = mlen + qlen
    ones = torch.ones(qlen, klen)
    if not same_length:
        return torch.triu(ones, 1 + mlen).bool()
    mask_len = klen - mem_len
    shift = qlen - mask_len if mask_len > 0 else qlen
    return (torch.triu(ones, 1 + mlen) + torch.tril(ones, -shift)).bool()


def authors_tf_mask(qlen, mlen, same_length):
    """The authors' TF formula (masked where 1), with matrix_band_part spelled as triu/tril."""
    ones = torch.ones(qlen, qlen)
    upper_strict = torch.triu(ones, 1)
    ret = torch.cat([torch.zeros(qlen, mlen), upper_strict], 1)
    if same_length:
        lower_strict = torch.tril(ones, -1)
        ret = torch.cat([ret[:, :qlen] + lower_strict, ret[:, qlen:]], 1)
    return ret.bool()


@pytest.mark.parametrize(
    "qlen,mlen,mem_len", [(4, 0, 4), (4, 4, 4), (3, 6, 6), (6, 2, 4), (5, 0, 3), (2, 5, 8)]
)
@pytest.mark.parametrize("same_length", [False, True])
def test_mask_torch_mode_equals_authors_pytorch(qlen, mlen, mem_len, same_length):
    run = SegmentSettings(mem_len=mem_len, same_length=same_length, window_keys="mem_len")
    ours = attention_mask(qlen, mlen, window=run.window)
    assert torch.equal(ours, authors_torch_mask(qlen, mlen, mem_len, same_length))


@pytest.mark.parametrize("qlen,mem_len", [(4, 4), (3, 6), (6, 2), (1, 5)])
@pytest.mark.parametrize("same_length", [False, True])
def test_mask_tf_mode_equals_authors_tf(qlen, mem_len, same_length):
    # the TF code always carries a full memory (mlen == mem_len)
    run = SegmentSettings(mem_len=mem_len, same_length=same_length, window_keys="mem_len+1")
    ours = attention_mask(qlen, mem_len, window=run.window)
    assert torch.equal(ours, authors_tf_mask(qlen, mem_len, same_length))


def test_same_length_key_counts():
    tf_rule = SegmentSettings(mem_len=8, same_length=True, window_keys="mem_len+1")
    torch_rule = tf_rule.replace(window_keys="mem_len")
    m_tf = attention_mask(5, 8, window=tf_rule.window)
    m_pt = attention_mask(5, 8, window=torch_rule.window)
    assert (~m_tf).sum(1).tolist() == [9] * 5
    assert (~m_pt).sum(1).tolist() == [8] * 5
    with pytest.raises(ValueError, match="mem_len >= 1"):
        torch_rule.replace(mem_len=0)  # no key to see: refused where the window is made


@pytest.mark.parametrize("impl", ["eager", "sdpa", "score_attend", "chunked"])
@pytest.mark.parametrize("pre_lnorm", [False, True])
def test_attention_layer_against_paper_four_terms(impl, pre_lnorm):
    """One attention sub-layer vs the paper's terms (a)-(d) computed element by element."""
    cfg = TransformerXLConfig(
        vocab_size=10,
        n_layer=1,
        n_head=2,
        d_model=8,
        d_head=3,
        d_inner=8,
        dropout=0.0,
        pre_lnorm=pre_lnorm,
    )
    att = RelativeAttention(cfg).double().eval()
    with torch.no_grad():
        for p in att.parameters():
            p.copy_(torch.randn_like(p))
    B, T, M, H, Dh = 2, 4, 3, 2, 3
    K = M + T
    h = torch.randn(B, T, 8, dtype=torch.float64)
    mem = torch.randn(B, M, 8, dtype=torch.float64)
    u = torch.randn(H, Dh, dtype=torch.float64)
    v = torch.randn(H, Dh, dtype=torch.float64)
    clamp = 5
    R = sinusoid(relative_distances(K, clamp), 8).double()  # rows: distances K..0
    mask = attention_mask(T, M, window=M + 1)  # same_length, the TF window (mem_len + 1 keys)
    pos = PositionTerms(content_bias=u, pos_keys=att.project_positions(R), pos_query_bias=v)
    attention = resolve_attention(impl, device_type="cpu", position_term=True)
    out = att(h, mem, mask, pos, attention=attention)

    # naive reference
    cat = torch.cat([mem, h], 1)
    x = att.ln(cat) if pre_lnorm else cat
    inner = H * Dh
    Wq, Wk, Wv = (
        att.qkv.weight[:inner],
        att.qkv.weight[inner : 2 * inner],
        att.qkv.weight[2 * inner :],
    )
    WR = att.r_net.weight
    ref = torch.zeros(B, T, inner, dtype=torch.float64)
    for b in range(B):
        for n in range(H):
            sl = slice(n * Dh, (n + 1) * Dh)
            for i in range(T):
                q = Wq[sl] @ x[b, M + i]
                scores = []
                for j in range(K):
                    if mask[i, j]:
                        scores.append(-math.inf)
                        continue
                    dist = min(M + i - j, clamp)
                    r = WR[sl] @ sinusoid(torch.tensor([float(dist)]), 8)[0].double()
                    k = Wk[sl] @ x[b, j]
                    a = q @ k  # (a) content
                    bb = q @ r  # (b) content-dependent position
                    c = u[n] @ k  # (c) global content bias
                    d = v[n] @ r  # (d) global position bias
                    scores.append((a + bb + c + d).item() / math.sqrt(Dh))
                p = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
                vals = torch.stack([Wv[sl] @ x[b, j] for j in range(K)])
                ref[b, i, sl] = p @ vals
    y = ref @ att.o.weight.T
    expect = h + y if pre_lnorm else att.ln(h + y)
    assert torch.allclose(out, expect, atol=1e-10, rtol=0)
