"""The TensorFlow side's small functions against the PyTorch ones and naive references."""

# isort: off
import transformer_xl.tf  # noqa: F401  (first: it must load before TensorFlow)

# isort: on
import numpy as np
import pytest
import tensorflow as tf
import torch

from transformer_xl.memory import update_mems as torch_update_mems
from transformer_xl.model import attention as torch_attn
from transformer_xl.segment import SegmentSettings
from transformer_xl.tf import adaptive, ops


@pytest.mark.parametrize("T,M", [(1, 0), (4, 0), (4, 3), (5, 9)])
def test_rel_shift_matches_naive_gather(T, M):
    K = M + T
    x = np.random.default_rng(0).normal(size=(2, 3, T, K + 1))
    out = ops.rel_shift(tf.constant(x)).numpy()
    assert out.shape == (2, 3, T, K)
    for i in range(T):
        for j in range(M + i + 1):  # visible keys: distance M + i - j
            np.testing.assert_array_equal(out[:, :, i, j], x[:, :, i, K - (M + i - j)])
    np.testing.assert_array_equal(out, torch_attn.rel_shift(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("qlen,mlen,mem_len", [(4, 0, 4), (3, 6, 6), (6, 2, 4), (2, 5, 8)])
@pytest.mark.parametrize("same_length", [False, True])
@pytest.mark.parametrize("keys", ["mem_len+1", "mem_len"])
def test_mask_equals_pytorch(qlen, mlen, mem_len, same_length, keys):
    window = SegmentSettings(mem_len=mem_len, same_length=same_length, window_keys=keys).window
    ours = ops.attention_mask(qlen, mlen, window=window).numpy()
    theirs = torch_attn.attention_mask(qlen, mlen, window=window).numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert not ours.all(axis=1).any()  # every query sees at least one key


def test_mask_with_a_one_key_window_sees_only_itself():
    mask = ops.attention_mask(3, 2, window=1).numpy()
    assert (~mask).sum(axis=1).tolist() == [1, 1, 1] and not mask[:, 2:].diagonal().any()


def test_sinusoid_and_distances_equal_pytorch():
    pos = np.array([0, 1, 7, 300, 1000])
    np.testing.assert_allclose(
        ops.sinusoid(tf.constant(pos), 10).numpy(),
        torch_attn.sinusoid(torch.from_numpy(pos), 10).numpy(),
        atol=2e-6,
    )
    assert ops.relative_distances(4, -1).numpy().tolist() == [4, 3, 2, 1, 0]
    assert ops.relative_distances(4, 2).numpy().tolist() == [2, 2, 2, 1, 0]


def test_layer_norm_and_linear_equal_pytorch():
    rng = np.random.default_rng(1)
    x, g, b = rng.normal(size=(2, 3, 8)), rng.normal(size=8), rng.normal(size=8)
    w, c = rng.normal(size=(5, 8)), rng.normal(size=5)
    ours = ops.layer_norm(tf.constant(x), tf.constant(g), tf.constant(b), 1e-5).numpy()
    t = [torch.from_numpy(a) for a in (x, g, b, w, c)]
    theirs = torch.nn.functional.layer_norm(t[0], (8,), t[1], t[2], 1e-5).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    lin = ops.linear(tf.constant(x), tf.constant(w), tf.constant(c)).numpy()
    np.testing.assert_allclose(
        lin, torch.nn.functional.linear(t[0], t[3], t[4]).numpy(), atol=1e-12
    )
    half = ops.layer_norm(tf.constant(x, tf.bfloat16), tf.constant(g), tf.constant(b), 1e-5)
    assert half.dtype == tf.bfloat16


@pytest.mark.parametrize("mem_len,ext_len,M", [(5, 0, 0), (5, 2, 3), (3, 0, 4), (0, 0, 2)])
def test_update_mems_equals_pytorch(mem_len, ext_len, M):
    rng = np.random.default_rng(2)
    mems = [rng.normal(size=(2, M, 3)) for _ in range(2)] if M else None
    hid = [rng.normal(size=(2, 4, 3)) for _ in range(2)]
    ours = ops.update_mems(
        None if mems is None else [tf.constant(m) for m in mems],
        [tf.constant(h) for h in hid], mem_len=mem_len, ext_len=ext_len,
    )  # fmt: skip
    theirs = torch_update_mems(
        None if mems is None else [torch.from_numpy(m) for m in mems],
        [torch.from_numpy(h) for h in hid], mem_len=mem_len, ext_len=ext_len,
    )  # fmt: skip
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_memory_length_checks_structure():
    m = tf.zeros([2, 3, 4])
    assert ops.memory_length((m, m), 2, 2, 4) == 3
    assert ops.memory_length(None, 2, 2, 4) == 0
    with pytest.raises(ValueError, match="one per layer"):
        ops.memory_length((m,), 2, 2, 4)
    with pytest.raises(ValueError, match=r"mems\[1\]"):
        ops.memory_length((m, tf.zeros([2, 3, 5])), 2, 2, 4)


def test_cluster_index_matches_searchsorted():
    ids = np.arange(0, 60)
    ours = adaptive.cluster_index(tf.constant(ids), (10, 30)).numpy()
    np.testing.assert_array_equal(ours, np.searchsorted([10, 30], ids, side="right"))


def _random_clusters(rng, cutoffs, vocab, dims, d_model):
    ends = (0, *cutoffs, vocab)
    out = []
    for i, d in enumerate(dims):
        n = ends[i + 1] - ends[i]
        proj = tf.constant(rng.normal(size=(d_model, d)), tf.float32) if d != d_model else None
        out.append(
            adaptive.Cluster(
                tf.constant(rng.normal(size=(n, d)), tf.float32),
                tf.constant(rng.normal(size=n), tf.float32),
                proj,
            )
        )
    cw = tf.constant(rng.normal(size=(len(cutoffs), dims[0])), tf.float32)
    cb = tf.constant(rng.normal(size=len(cutoffs)), tf.float32)
    return out, cw, cb


def test_adaptive_softmax_sums_to_one_and_both_nll_paths_agree():
    rng = np.random.default_rng(3)
    clusters, cw, cb = _random_clusters(rng, (10, 30), 60, (8, 4, 2), 8)
    hidden = tf.constant(rng.normal(size=(50, 8)), tf.float32)
    target = tf.constant(rng.integers(0, 60, size=50))
    lp = adaptive.adaptive_log_probs(hidden, clusters, cw, cb).numpy()
    assert lp.shape == (50, 60)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)
    expected = -lp[np.arange(50), target.numpy()]
    for dense in (False, True):
        nll = adaptive.adaptive_nll(hidden, target, clusters, cw, cb, dense=dense).numpy()
        np.testing.assert_allclose(nll, expected, atol=1e-5)
