"""The incremental inference path (StreamingLM) against the reference ``model(...)``.

Weights are drawn with a large spread so that attention is sharp and every position term
matters; each exactness test also checks that a wrong setting would have been caught.
"""

from __future__ import annotations

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.model.incremental import (
    KeyValueWindow,
    StreamingLM,
    chunk_mask,
    distance_matrix,
)
from transformer_xl.segment import FIELDS as SEGMENT_FIELDS
from transformer_xl.segment import SegmentSettings

TOL = 1e-5


def tiny_model(seed: int = 0, std: float = 0.3, **overrides) -> TransformerXLLM:
    """A small model in eval mode with sharp random weights (float32)."""
    torch.manual_seed(seed)
    fields = dict(
        vocab_size=40, n_layer=3, n_head=2, d_model=16, d_head=8, d_inner=32, dropout=0.0,
    )  # fmt: skip
    run = {k: overrides.pop(k) for k in SEGMENT_FIELDS if k in overrides}
    fields.update(overrides, segment=SegmentSettings(tgt_len=4, mem_len=5).replace(**run))
    model = TransformerXLLM(TransformerXLConfig(**fields)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def reference_log_probs(model, ids, cuts, **run) -> torch.Tensor:
    """``model(...)`` over ``ids`` ``[B, N]`` in chunks of the lengths ``cuts``, memory carried
    (``run`` changes the model's settings)."""
    settings = model.config.segment.replace(ext_len=0, **run)
    mems, out, s = None, [], 0
    with torch.no_grad():
        for c in cuts:
            o = model(ids[:, s : s + c], mems=mems, settings=settings, return_log_probs=True)
            mems, s = o.mems, s + c
            out.append(o.log_probs)
    return torch.cat(out, dim=1)


def stream_log_probs(model, ids, cuts, **run) -> torch.Tensor:
    stream = StreamingLM(model, ids.shape[0], model.config.segment.replace(**run))
    out, s = [], 0
    for c in cuts:
        out.append(stream.log_probs(ids[:, s : s + c]))
        s += c
    return torch.cat(out, dim=1)


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------- small pure functions
def test_distance_matrix_matches_loop():
    for mem, qlen in [(0, 1), (3, 1), (5, 4), (0, 6)]:
        got = distance_matrix(mem, qlen)
        assert got.shape == (qlen, mem + qlen)
        for i in range(qlen):
            for s in range(mem + qlen):
                assert got[i, s] == mem + i - s


@pytest.mark.parametrize("window", [None, 3, 5])
def test_chunk_mask_matches_loop(window):
    valid = torch.tensor([4, 0, 2])
    mem, qlen = 4, 3
    got = chunk_mask(valid, mem, qlen, window=window)
    assert got.shape == (3, 1, qlen, mem + qlen)
    for b in range(3):
        for i in range(qlen):
            for s in range(mem + qlen):
                d = mem + i - s
                hidden = d < 0 or s < mem - valid[b] or (window is not None and d >= window)
                assert bool(got[b, 0, i, s]) == hidden, (b, i, s)


def test_key_value_window_matches_concatenation():
    """Window contents equal a naive concatenate-and-trim memory, across compactions, growth
    (a chunk longer than the slack) and resets."""
    torch.manual_seed(0)
    mem_len, batch = 6, 2
    kv = KeyValueWindow(1, batch, 1, 2, mem_len, device="cpu", dtype=torch.float32, slack=4)
    naive = [torch.zeros(0, 2) for _ in range(batch)]
    longest = 0
    for step, qlen in enumerate([1, 3, 1, 1, 9, 2, 1, 1, 1, 5, 1]):
        if step == 6:
            kv.reset([1])
            naive[1] = torch.zeros(0, 2)
        new = torch.randn(2, batch, 1, qlen, 2)  # [2, B, H, T, Dh]
        kv.open(qlen)
        window = kv.keys_values(0, new)  # [2, B, H, C + T, Dh]
        for b in range(batch):
            seen = torch.cat([naive[b], new[0, b, 0]])  # keys of row b: memory then new
            got = window[0, b, 0, window.shape[-2] - len(seen) :]
            assert torch.equal(got, seen)
            naive[b] = seen[-mem_len:]
        kv.advance(qlen)
        assert kv.counts == [len(n) for n in naive]
        longest = max(longest, qlen)
        assert kv.capacity <= mem_len + max(4, longest)


# ---------------------------------------------------------------------- exactness
SEGMENTINGS = [[1] * 17, [4, 4, 4, 4, 1], [6, 1, 1, 9], [17]]
MEM = dict(mem_len=5)
CLAMP = dict(mem_len=5, clamp_len=3)
SAME_TF = dict(mem_len=5, same_length=True, window_keys="mem_len+1")
SAME_TORCH_CLAMP = dict(mem_len=5, same_length=True, window_keys="mem_len", clamp_len=2)
NO_MEM = dict(mem_len=0)
LONG_MEM = dict(mem_len=12, same_length=True, clamp_len=6)  # memory longer than the text
CASES = [  # (architecture, run settings): every setting with attn_type 0, a spread elsewhere
    *[(dict(attn_type=0), r) for r in (MEM, CLAMP, SAME_TF, SAME_TORCH_CLAMP, NO_MEM, LONG_MEM)],
    *[(dict(attn_type=0, pre_lnorm=True, untie_r=True), run) for run in (CLAMP, SAME_TORCH_CLAMP)],
    *[(dict(attn_type=0, cutoffs=(10, 25), div_val=2, tie_projs=(False, True, True)), run)
      for run in (MEM, SAME_TF)],
    *[(dict(attn_type=1), run) for run in (CLAMP, SAME_TF, SAME_TORCH_CLAMP, NO_MEM)],
    *[(dict(attn_type=1, pre_lnorm=True, untie_r=True), run) for run in (MEM, SAME_TF)],
    *[(dict(attn_type=2), run) for run in (CLAMP, SAME_TF, SAME_TORCH_CLAMP)],
    *[(dict(attn_type=3), run) for run in (MEM, SAME_TF, SAME_TORCH_CLAMP)],
]  # fmt: skip


def _case_id(case) -> str:
    arch, run = case
    return "-".join(f"{k}={v}" for k, v in {**arch, **run}.items())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and they suffer on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_stream_equals_model_for_every_segmenting(case):
    arch, run = case
    model = tiny_model(**arch)
    ids = torch.randint(0, 40, (2, 17), generator=torch.Generator().manual_seed(1))
    for cuts in SEGMENTINGS:
        ref = reference_log_probs(model, ids, cuts, **run)
        got = stream_log_probs(model, ids, cuts, **run)
        assert max_diff(ref, got) <= TOL, cuts


@pytest.mark.parametrize("arch", [dict(attn_type=t) for t in range(4)], ids=str)
def test_a_wrong_setting_is_caught(arch):
    """The comparison can fail: another memory length or clamp gives other numbers."""
    model = tiny_model(**arch)
    ids = torch.randint(0, 40, (2, 17), generator=torch.Generator().manual_seed(1))
    ref = reference_log_probs(model, ids, [4, 4, 4, 4, 1], mem_len=5)
    assert max_diff(ref, stream_log_probs(model, ids, [4, 4, 4, 4, 1], mem_len=4)) > 1e-3
    assert (
        max_diff(ref, stream_log_probs(model, ids, [4, 4, 4, 4, 1], mem_len=5, clamp_len=2)) > 1e-3
    )


@pytest.mark.parametrize("attn_type", [0, 1])
@pytest.mark.parametrize("keys", ["mem_len+1", "mem_len"])
@pytest.mark.parametrize("clamp_len", [-1, 3])
def test_token_by_token_equals_one_pass_with_same_length(attn_type, keys, clamp_len):
    """With same_length every query sees a fixed window of keys, so reading one token at a
    time with memory gives exactly one forward pass over the whole context."""
    model = tiny_model(attn_type=attn_type)
    ids = torch.randint(0, 40, (2, 30), generator=torch.Generator().manual_seed(2))
    run = dict(mem_len=6, same_length=True, window_keys=keys, clamp_len=clamp_len)
    with torch.no_grad():
        settings = model.config.segment.replace(**run)
        one_pass = model(ids, settings=settings, return_log_probs=True).log_probs
    for cuts in ([1] * 30, [3] * 10, [8, 1, 13, 8]):
        assert max_diff(one_pass, stream_log_probs(model, ids, cuts, **run)) <= TOL
    assert (
        max_diff(one_pass, stream_log_probs(model, ids, [1] * 30, **{**run, "mem_len": 7})) > 1e-3
    )


def test_rows_reset_independently():
    """A batch carries independent streams: row 1 restarts mid-way, row 0 later; every row
    equals its own reference run."""
    model = tiny_model(same_length=True)
    ids = torch.randint(0, 40, (3, 30), generator=torch.Generator().manual_seed(3))
    stream = StreamingLM(model, 3, settings=model.config.segment.replace(mem_len=6))
    parts = [stream.log_probs(ids[:, :11])]
    stream.reset([1])
    assert stream.memory_lengths.tolist() == [6, 0, 6]
    parts += [stream.log_probs(ids[:, 11:14]), stream.log_probs(ids[:, 14:15])]
    stream.reset(torch.tensor([True, False, False]))
    parts.append(stream.log_probs(ids[:, 15:]))
    got = torch.cat(parts, dim=1)
    ref = lambda row, a, b, cuts: reference_log_probs(
        model, ids[row : row + 1, a:b], cuts, mem_len=6
    )
    expected = [
        torch.cat([ref(0, 0, 15, [11, 3, 1]), ref(0, 15, 30, [15])], dim=1),
        torch.cat([ref(1, 0, 11, [11]), ref(1, 11, 30, [3, 1, 15])], dim=1),
        ref(2, 0, 30, [11, 3, 1, 15]),
    ]
    for row in range(3):
        assert max_diff(got[row], expected[row][0]) <= TOL


def test_reorder_and_clone():
    model = tiny_model()
    ids = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(4))
    stream = StreamingLM(model, 2, settings=model.config.segment.replace(mem_len=5))
    stream.feed(ids[:, :8])
    copy = stream.clone()
    stream.reorder([1, 1, 0])
    assert stream.batch_size == 3
    after = stream.log_probs(ids[[1, 1, 0], 8:])
    ref = reference_log_probs(model, ids, [8, 4], mem_len=5)[:, 8:]
    assert max_diff(after, ref[[1, 1, 0]]) <= TOL
    assert max_diff(copy.log_probs(ids[:, 8:]), ref) <= TOL  # the clone was not disturbed


def test_concat_joins_streams_of_different_lengths():
    model = tiny_model(same_length=True)
    ids = torch.randint(0, 40, (3, 20), generator=torch.Generator().manual_seed(6))
    lengths = [9, 2, 4]  # memories: full, short, short
    parts = []
    for row, n in enumerate(lengths):
        s = StreamingLM(model, 1, settings=model.config.segment.replace(mem_len=5))
        s.feed(ids[row : row + 1, :n])
        parts.append(s)
    joined = StreamingLM.concat(parts)
    assert joined.memory_lengths.tolist() == [5, 2, 4]
    got = joined.log_probs(torch.stack([ids[r, n : n + 6] for r, n in enumerate(lengths)]))
    for row, n in enumerate(lengths):
        ref = reference_log_probs(model, ids[row : row + 1, : n + 6], [n, 6], mem_len=5)
        assert max_diff(got[row], ref[0, n:]) <= TOL
    with pytest.raises(ValueError, match="same model"):
        StreamingLM.concat(
            [parts[0], StreamingLM(model, 1, settings=model.config.segment.replace(mem_len=4))]
        )


def test_score_equals_model_nll_and_memory_stays_bounded():
    model = tiny_model(cutoffs=(10, 25), div_val=2)
    data = torch.randint(0, 40, (2, 61), generator=torch.Generator().manual_seed(5))
    x, y = data[:, :-1], data[:, 1:]
    stream = StreamingLM(model, 2, settings=model.config.segment.replace(mem_len=7))
    got = stream.score(x, y, chunk_len=1)
    assert got.shape == (2, 60)
    mems, ref = None, []
    with torch.no_grad():
        for s in range(60):
            o = model(
                x[:, s : s + 1],
                settings=model.config.segment.replace(mem_len=7),
                labels=y[:, s : s + 1].contiguous(),
                mems=mems,
            )
            mems = o.mems
            ref.append(-o.token_nll)
    assert max_diff(got, torch.cat(ref, dim=1)) <= TOL
    assert stream.memory_lengths.tolist() == [7, 7]
    assert stream.kv.capacity <= 7 + 128


def test_bad_input_is_a_clear_error():
    model = tiny_model()
    stream = StreamingLM(model, 2)
    with pytest.raises(ValueError, match="outside"):
        stream.feed(torch.tensor([[1], [40]]))
    with pytest.raises(ValueError, match="batch=2"):
        stream.feed(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="integer"):
        stream.feed(torch.zeros(2, 1))
    with pytest.raises(ValueError, match="outside the batch"):
        stream.reset([2])
    with pytest.raises(ValueError, match="labels shape"):
        stream.score(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="mem_len >= 1"):
        StreamingLM(
            model,
            1,
            settings=model.config.segment.replace(
                mem_len=0, same_length=True, window_keys="mem_len"
            ),
        )
    with pytest.raises(ValueError, match="clamp_len"):
        StreamingLM(model, 1, settings=model.config.segment.replace(clamp_len=0))
    with pytest.raises(ValueError, match="pre_lnorm"):
        StreamingLM(tiny_model(attn_type=2, pre_lnorm=True), 1)
    assert stream.memory_lengths.tolist() == [0, 0]  # nothing was half-read
