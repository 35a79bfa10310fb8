"""Streams: the authors' iterators (written out naively here) as references, sharding, resume,
evaluation coverage."""

from itertools import islice

import numpy as np
import pytest
import torch

from transformer_xl.data.streams import (
    EvalStream,
    OrderedStream,
    SentenceStream,
    fill_plan,
    varlen_schedule,
)


# ------------------------------------------------------------ naive references
def authors_ordered(data, bsz, bptt, ext_len, lengths=None):
    """LMOrderedIterator.get_fixlen_iter / get_batch, time-major as the authors wrote it;
    ``lengths`` replays a varlen schedule instead of the fixed bptt."""
    data = torch.as_tensor(data, dtype=torch.long)
    n_step = data.size(0) // bsz
    data = data.narrow(0, 0, n_step * bsz).view(bsz, -1).t().contiguous()
    starts = range(0, data.size(0) - 1, bptt) if lengths is None else None
    out = []
    if lengths is None:
        for i in starts:
            seq_len = min(bptt, data.size(0) - 1 - i)
            beg = max(0, i - ext_len)
            out.append((data[beg : i + seq_len], data[i + 1 : i + 1 + seq_len]))
    else:
        i = 0
        for want in lengths:
            seq_len = min(want, data.size(0) - 1 - i)
            beg = max(0, i - ext_len)
            out.append((data[beg : i + seq_len], data[i + 1 : i + 1 + seq_len]))
            i += seq_len
    return out


def authors_varlen_lengths(n_step, bptt, rng, std=5, min_len=5, max_deviation=3):
    """get_varlen_iter's loop, drawing from ``rng`` where the authors use np.random."""
    max_len = bptt + max_deviation * std
    i, lengths = 0, []
    while True:
        b = bptt if rng.random() < 0.95 else bptt / 2.0
        b = min(max_len, max(min_len, int(rng.normal(b, std))))
        seq_len = min(b, n_step - 1 - i)
        lengths.append(int(seq_len))
        i += seq_len
        if i >= n_step - 2:
            break
    return lengths


def authors_shuffled(sentences, bsz, bptt, ext_len):
    """LMShuffledIterator.stream_iterator over the sentences in the given order."""
    sent_stream = iter(sentences)
    streams = [None] * bsz
    data = torch.LongTensor(bptt, bsz)
    target = torch.LongTensor(bptt, bsz)
    n_retain = 0
    out = []
    while True:
        data[n_retain:].fill_(-1)
        target.fill_(-1)
        valid_batch = True
        for i in range(bsz):
            n_filled = 0
            try:
                while n_filled < bptt:
                    if streams[i] is None or len(streams[i]) <= 1:
                        streams[i] = next(sent_stream)
                    n_new = min(len(streams[i]) - 1, bptt - n_filled)
                    data[n_retain + n_filled : n_retain + n_filled + n_new, i] = streams[i][:n_new]
                    target[n_filled : n_filled + n_new, i] = streams[i][1 : n_new + 1]
                    streams[i] = streams[i][n_new:]
                    n_filled += n_new
            except StopIteration:
                valid_batch = False
                break
        if not valid_batch:
            return out
        out.append((data.clone(), target.clone()))
        n_retain = min(data.size(0), ext_len)
        if n_retain > 0:
            data[:n_retain] = data[-n_retain:].clone()  # (old torch allowed the overlap)
        data.resize_(n_retain + bptt, data.size(1))


def check_against(seg, ref_data, ref_target):
    """Our batch-first segment against the authors' time-major (data, target)."""
    x, y = seg
    n_ext = seg.n_ext
    assert torch.equal(x, ref_data.t())
    assert torch.equal(y[:, n_ext:], ref_target.t())
    assert not seg.loss_mask[:, :n_ext].any() and seg.loss_mask[:, n_ext:].all()


# ------------------------------------------------------------ ordered stream
@pytest.mark.parametrize(
    "length,bsz,bptt,ext", [(1000, 4, 7, 0), (997, 3, 10, 4), (50, 5, 20, 25), (64, 8, 3, 2)]
)
def test_ordered_matches_authors(length, bsz, bptt, ext):
    data = np.random.default_rng(0).integers(0, 50, length).astype(np.uint16)
    ours = list(OrderedStream(data, bsz, bptt, ext_len=ext))
    ref = authors_ordered(data, bsz, bptt, ext)
    assert len(ours) == len(ref)
    for k, (seg, (d, t)) in enumerate(zip(ours, ref, strict=True)):
        check_against(seg, d, t)
        assert seg.first == (k == 0)
        # the context positions' labels are the real next tokens
        assert torch.equal(seg.labels[:, :-1], seg.input_ids[:, 1:])


def test_varlen_schedule_matches_authors_loop():
    for seed in range(5):
        ours = varlen_schedule(503, 20, np.random.default_rng(seed))
        ref = authors_varlen_lengths(503, 20, np.random.default_rng(seed))
        assert ours[:, 1].tolist() == ref
        assert ours[0, 0] == 0 and (np.cumsum(ours[:-1, 1]) == ours[1:, 0]).all()


def test_varlen_stream_matches_authors_batches():
    data = np.arange(2000) % 251
    s = OrderedStream(data, 4, 20, ext_len=3, varlen=True, seed=7)
    sched = s.schedule()
    ours = list(s)
    ref = authors_ordered(data, 4, 20, 3, lengths=sched[:, 1].tolist())
    assert len(ours) == len(ref) == len(sched)
    for seg, (d, t) in zip(ours, ref, strict=True):
        check_against(seg, d, t)
    assert not np.array_equal(OrderedStream(data, 4, 20, varlen=True, seed=7).schedule(1), sched)


@pytest.mark.parametrize("world", [2, 4])
def test_ordered_sharding_equals_single_process(world):
    data = np.random.default_rng(1).integers(0, 1000, 4099).astype(np.uint16)
    whole = list(OrderedStream(data, 8, 16, ext_len=5, varlen=True, seed=3))
    parts = [
        list(OrderedStream(data, 8, 16, ext_len=5, varlen=True, seed=3, rank=r, world_size=world))
        for r in range(world)
    ]
    for k, seg in enumerate(whole):
        for field in ("input_ids", "labels", "loss_mask"):
            joined = torch.cat([getattr(p[k], field) for p in parts], dim=0)
            assert torch.equal(joined, getattr(seg, field))


def test_ordered_resume_is_exact_across_epochs():
    data = np.arange(600) % 97
    straight = OrderedStream(data, 3, 9, ext_len=2, varlen=True, seed=1)
    reference = list(islice(straight.forever(), 60))
    n_epoch = len(OrderedStream(data, 3, 9, ext_len=2, varlen=True, seed=1))
    for cut in (0, 5, n_epoch - 1, n_epoch, n_epoch + 3):
        a = OrderedStream(data, 3, 9, ext_len=2, varlen=True, seed=1)
        it = a.forever()
        for _ in range(cut):
            next(it)
        state = a.state_dict()
        b = OrderedStream(data, 3, 9, ext_len=2, varlen=True, seed=1)
        b.load_state_dict(state)
        rest = list(islice(b.forever(), 60 - cut))
        for x, y in zip(rest, reference[cut:], strict=True):
            assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.labels, y.labels)
            assert x.first == y.first


def test_ordered_state_mismatch_and_bad_arguments():
    data = np.arange(100)
    state = OrderedStream(data, 4, 5).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        OrderedStream(data, 2, 5).load_state_dict(state)
    with pytest.raises(ValueError, match="divisible"):
        OrderedStream(data, 5, 5, world_size=2)
    with pytest.raises(ValueError, match="too short"):
        OrderedStream(np.arange(3), 4, 5)


# ------------------------------------------------------------ evaluation
@pytest.mark.parametrize(
    "length,bsz,tgt", [(101, 4, 7), (10, 4, 3), (13, 4, 100), (2, 3, 1), (1000, 7, 16)]
)
def test_eval_scores_every_token_once(length, bsz, tgt):
    data = np.arange(length)  # unique values: a label identifies its position
    scored = []
    for seg in EvalStream(data, bsz, tgt):
        m = seg.loss_mask
        assert torch.equal(seg.labels[m], seg.input_ids[m] + 1)  # label follows its input
        scored.extend(seg.labels[m].tolist())
    assert sorted(scored) == list(range(1, length))


@pytest.mark.parametrize("world", [2, 4])
def test_eval_sharding_equals_single_process(world):
    data = np.random.default_rng(2).integers(0, 100, 999)
    whole = list(EvalStream(data, 8, 10))
    parts = [list(EvalStream(data, 8, 10, rank=r, world_size=world)) for r in range(world)]
    for k, seg in enumerate(whole):
        assert torch.equal(torch.cat([p[k].labels for p in parts]), seg.labels)
        assert torch.equal(torch.cat([p[k].loss_mask for p in parts]), seg.loss_mask)


# ------------------------------------------------------------ sentence stream
def make_sentences(seed, n, bos=0, vocab=30):
    rng = np.random.default_rng(seed)
    sents = [rng.integers(1, vocab, rng.integers(0, 12)) for _ in range(n)]
    flat = [bos]
    offsets = []
    for s in sents:
        offsets.append(len(flat) - 1)
        flat.extend(s.tolist() + [bos])
    offsets.append(len(flat) - 1)
    as_tensors = [torch.tensor([bos, *s.tolist(), bos]) for s in sents]
    return np.asarray(flat, dtype=np.uint16), np.asarray(offsets), as_tensors


@pytest.mark.parametrize("bsz,bptt,ext", [(3, 5, 0), (4, 8, 3), (2, 4, 10)])
def test_sentence_stream_matches_authors(bsz, bptt, ext):
    flat, offsets, sents = make_sentences(0, 80)
    for k, t in enumerate(sents):  # the flat layout holds every sentence with both boundaries
        assert flat[offsets[k] : offsets[k + 1] + 1].tolist() == t.tolist()
    ours = list(SentenceStream(flat, offsets, bsz, bptt, ext_len=ext, shuffle=False))
    ref = authors_shuffled(sents, bsz, bptt, ext)
    assert len(ours) == len(ref) > 3
    for seg, (d, t) in zip(ours, ref, strict=True):
        check_against(seg, d, t)


def test_fill_plan_takes_sentences_in_row_order():
    plan = list(fill_plan([3, 5, 2, 4], batch_size=2, tgt_len=3))
    assert plan[0] == [[(0, 0, 2), (1, 0, 1)], [(2, 0, 1), (3, 0, 2)]]
    assert len(plan) == 1  # the second batch runs out of sentences and is dropped


def test_sentence_stream_shuffle_shards_sharding_resume():
    flat, offsets, _ = make_sentences(1, 300)
    shards = [(0, 100), (100, 180), (180, 300)]
    kw = dict(shards=shards, ext_len=2, seed=5)
    whole = SentenceStream(flat, offsets, 4, 6, **kw)
    ref = list(islice(whole.forever(), 200))
    epoch0 = list(SentenceStream(flat, offsets, 4, 6, **kw))
    epoch1 = ref[len(epoch0) : 2 * len(epoch0)]
    assert not all(
        torch.equal(a.input_ids, b.input_ids) for a, b in zip(epoch0, epoch1, strict=True)
    )
    # every sentence's words appear in an epoch (up to the dropped tail of each shard)
    assert sum(s.n_tokens for s in epoch0) > 0.8 * (len(flat) - 1)
    # sharding
    parts = [
        list(SentenceStream(flat, offsets, 4, 6, rank=r, world_size=2, **kw)) for r in range(2)
    ]
    for k, seg in enumerate(epoch0):
        assert torch.equal(torch.cat([p[k].input_ids for p in parts]), seg.input_ids)
        assert torch.equal(torch.cat([p[k].labels for p in parts]), seg.labels)
    # resume at several cut points, including a shard boundary and an epoch boundary
    for cut in (1, 17, len(epoch0) - 1, len(epoch0), len(epoch0) + 5):
        a = SentenceStream(flat, offsets, 4, 6, **kw)
        it = a.forever()
        for _ in range(cut):
            next(it)
        b = SentenceStream(flat, offsets, 4, 6, **kw)
        b.load_state_dict(a.state_dict())
        for x, y in zip(islice(b.forever(), 30), ref[cut : cut + 30], strict=True):
            assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.labels, y.labels)
            assert x.n_ext == y.n_ext and x.first == y.first
