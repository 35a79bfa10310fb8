"""transformer_xl.scoring and ``txl score`` (issue 21): a stateful scorer over N streams whose
ragged batches score as each sequence alone, ``select`` / ``reset``; the CLI against ``txl
eval`` of the same text prepared as one stream; n-best rescoring with a briefly trained model;
bad input answered with exit 2 naming the line."""

from __future__ import annotations

import io
import json
import random
import sys

import numpy as np
import pytest
import torch

from convert_helpers import one_thread  # noqa: F401  (autouse fixture: one thread)
from transformer_xl import Scorer, TransformerXLConfig, TransformerXLLM
from transformer_xl.cli import main
from transformer_xl.data import load_prepared
from transformer_xl.data.vocab import Vocab
from transformer_xl.model.incremental import StreamingLM
from transformer_xl.segment import SegmentSettings

V = 40


def txl(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = TransformerXLConfig(
        vocab_size=V, n_layer=2, n_head=2, d_model=16, d_head=8, d_inner=32, dropout=0.0,
        segment=SegmentSettings(tgt_len=8, mem_len=8), cutoffs=[10], div_val=2,
    )  # fmt: skip
    return TransformerXLLM(cfg).eval()


def seqs(rng, lengths) -> list[list[int]]:
    return [rng.integers(0, V, n).tolist() for n in lengths]


# ---------------------------------------------------------------------------- the scorer
@pytest.mark.parametrize("mem_len", [3, 64])  # shorter and longer than the sequences
@pytest.mark.parametrize("same_length", [False, True])
def test_a_ragged_batch_scores_each_sequence_as_alone(model, mem_len, same_length):
    rng = np.random.default_rng(mem_len)
    s = SegmentSettings(mem_len=mem_len, same_length=same_length)
    batch = Scorer(model, 4, s, start_ids=[0])
    alone = [Scorer(model, 1, s, start_ids=[0]) for _ in range(4)]
    # round 1 from empty memory; later rounds with memory, some streams idle, one reset
    rounds = [[7, 1, 12, 4], [2, 9, 0, 5], [11, 3, 6, 0]]
    for r, lengths in enumerate(rounds):
        if r == 2:
            batch.reset([1])
            alone[1].reset()
        streams = [k for k, n in enumerate(lengths) if n]
        given = seqs(rng, [lengths[k] for k in streams])
        got = batch.score(given, streams=streams)
        for k, g, lp in zip(streams, given, got, strict=True):
            want = alone[k].score([g])[0]
            assert lp.shape == (len(g),)
            torch.testing.assert_close(lp, want, atol=1e-5, rtol=0)
        assert batch.memory_lengths == [a.memory_lengths[0] for a in alone]


def test_scores_equal_the_model_reading_everything_at_once(model):
    """Independent of the cached path: ``model(start + tokens)`` with full context."""
    rng = np.random.default_rng(1)
    a, b = seqs(rng, [9, 6])
    long_memory = model.config.segment.replace(mem_len=100)
    scorer = Scorer(model, 1, long_memory, start_ids=[3])
    got = torch.cat([scorer.score([a])[0], scorer.score([b])[0]])
    ids = torch.tensor([[3, *a, *b]])
    out = model(ids[:, :-1], labels=ids[:, 1:], settings=long_memory)
    torch.testing.assert_close(got, -out.token_nll[0], atol=1e-5, rtol=0)


def test_select_forks_and_reorders_streams(model):
    rng = np.random.default_rng(2)
    hist = seqs(rng, [5, 8, 3])
    six = model.config.segment.replace(mem_len=6)
    scorer = Scorer(model, 3, six, start_ids=[0])
    scorer.score(hist)
    scorer.select([1, 1, 0, 2])
    assert scorer.streams == 4
    nxt = seqs(rng, [4, 2, 6, 3])
    got = scorer.score(nxt)
    for k, src in enumerate([1, 1, 0, 2]):
        ref = Scorer(model, 1, six, start_ids=[0])
        ref.score([hist[src]])
        torch.testing.assert_close(got[k], ref.score([nxt[k]])[0], atol=1e-5, rtol=0)


def test_reset_and_clone(model):
    rng = np.random.default_rng(3)
    a, b = seqs(rng, [6, 5])
    scorer = Scorer(model, 2, start_ids=[0])
    fresh = scorer.score([a, a])
    twin = scorer.clone()
    scorer.reset([0])
    again = scorer.score([a, b])
    torch.testing.assert_close(again[0], fresh[0], atol=1e-6, rtol=0)
    # the clone kept the state of the moment: its stream 1 reads b after a, as the original did
    torch.testing.assert_close(twin.score([b], streams=[1])[0], again[1], atol=1e-6, rtol=0)
    # read so far: start + a[:-1] (6 tokens), then a[-1] + b[:-1] (5 more; mem_len 8)
    assert twin.memory_lengths == [6, 8]


def test_score_padded_with_lengths_or_a_mask(model):
    rng = np.random.default_rng(4)
    ids = torch.tensor(rng.integers(0, V, (3, 7)))
    lengths = [7, 0, 4]
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    by_len = Scorer(model, 3, start_ids=[0]).score_padded(ids, lengths)
    by_mask = Scorer(model, 3, start_ids=[0]).score_padded(ids, mask=mask)
    lists = Scorer(model, 3, start_ids=[0]).score([ids[0].tolist(), [], ids[2, :4].tolist()])
    torch.testing.assert_close(by_len, by_mask)
    assert (by_len[~mask] == 0).all()
    for r, lp in enumerate(lists):
        torch.testing.assert_close(by_len[r, : lengths[r]], lp, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="prefix"):
        Scorer(model, 3, start_ids=[0]).score_padded(ids, mask=~mask)


def test_bf16_weights_cast_once(model):
    rng = np.random.default_rng(5)
    given = seqs(rng, [9, 4])
    want = Scorer(model, 2, start_ids=[0]).score(given)
    low = TransformerXLLM(model.config).eval()
    low.load_state_dict(model.state_dict())
    low = low.to(torch.bfloat16)
    scorer = Scorer(low, 2, start_ids=[0])
    got = scorer.score(given)
    assert scorer.state.kv.buf.dtype == torch.bfloat16
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, atol=0.15, rtol=0.05)


def test_streaming_lm_checks_the_lengths_of_a_ragged_chunk(model):
    stream = StreamingLM(model, 2)
    for bad in ([1, 5], [1], [-1, 2], [0.5, 1]):
        with pytest.raises(ValueError, match="lengths"):
            stream.hidden(torch.zeros(2, 4, dtype=torch.long), bad)
    assert stream.memory_lengths.tolist() == [0, 0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: Scorer(m, 2, start_ids=[]), "start_ids"),
        (lambda m: Scorer(m, 2, start_ids=[V]), "start_ids"),
        (lambda m: Scorer(m, 2, start_ids=[0]).score([[1]], streams=[2]), "outside the 2"),
        (lambda m: Scorer(m, 2, start_ids=[0]).score([[1], [2]], streams=[1, 1]), "only once"),
        (lambda m: Scorer(m, 2, start_ids=[0]).score([[1], [V]]), "outside"),
        (lambda m: Scorer(m, 2, start_ids=[0]).score_padded([[1, 2], [3, 4]], [1, 3]), "lengths"),
    ],
)
def test_bad_calls_are_refused(model, call, match):
    with pytest.raises(ValueError, match=match):
        call(model)


# ---------------------------------------------------------------------------- a trained model
SUBJECTS = ["the cat", "the dog", "a bird", "the man", "a woman", "the child"]
VERBS = ["sees", "chases", "likes", "finds", "follows"]
OBJECTS = ["the ball", "a tree", "the house", "the car", "a box"]
PLACES = ["in the park", "at home", "by the river", "near the school"]


def sentence(rng: random.Random) -> str:
    return " ".join(
        [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(PLACES), "."]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A word-level model trained for a few hundred steps on sentences of a small grammar."""
    rng = random.Random(0)
    text = [sentence(rng) for _ in range(600)]
    words = sorted({w for line in text for w in line.split()})
    vocab = Vocab(["<eos>", "<unk>", *words], "word", eos_token="<eos>", unk_token="<unk>",
                  special_tokens=["<eos>", "<unk>"])  # fmt: skip
    ids = []
    for line in text:
        ids += [vocab.get(w) for w in line.split()] + [0]
    data = torch.tensor(ids)
    cfg = TransformerXLConfig(
        vocab_size=len(vocab), n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=64,
        dropout=0.0, segment=SegmentSettings(tgt_len=16, mem_len=16),
    )  # fmt: skip
    torch.manual_seed(0)
    model = TransformerXLLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rows = data[: len(data) // 8 * 8].view(8, -1)  # [8, L]
    mems = None
    for step in range(300):
        s = step * 16 % (rows.shape[1] - 17)
        if s < 16:
            mems = None
        out = model(rows[:, s : s + 16], labels=rows[:, s + 1 : s + 17], mems=mems)
        mems = out.mems
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    folder = tmp_path_factory.mktemp("scoring") / "model"
    model.save_pretrained(folder)
    vocab.save(folder / "vocab.json")
    return folder


def corrupt(words: list[str], rng: random.Random) -> list[str]:
    """A word swap, deletion or substitution (a word from another part of the sentence)."""
    w = list(words[:-1])  # keep the final "."
    kind = rng.choice(["swap", "delete", "substitute"])
    i = rng.randrange(len(w) - 1)
    if kind == "swap":
        while w[i] == w[i + 1]:
            i = rng.randrange(len(w) - 1)
        w[i], w[i + 1] = w[i + 1], w[i]
    elif kind == "delete":
        del w[i]
    else:
        pool = [x for x in {*" ".join(VERBS + PLACES).split()} if x != w[i]]
        w[i] = rng.choice(sorted(pool))
    return [*w, "."]


def nbest_file(path, n_utts: int, seed: int) -> dict[str, str]:
    """Held-out n-best lists (another seed than the training text): the true sentence among
    corrupted variants, shuffled; returns each utterance's true sentence."""
    rng = random.Random(seed)
    lines, truths = [], {}
    for u in range(n_utts):
        true = sentence(rng)
        variants = {" ".join(corrupt(true.split(), rng)) for _ in range(6)} - {true}
        hyps = [true, *sorted(variants)]
        rng.shuffle(hyps)
        lines += [f"utt{u:02d}\t{h}\t{rng.uniform(-1, 1):.3f}" for h in hyps]
        truths[f"utt{u:02d}"] = true
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return truths


def test_nbest_ranks_the_true_sentence_first(trained, tmp_path, capsys):
    path = tmp_path / "nbest.tsv"
    truths = nbest_file(path, 20, seed=123)
    argv = ["score", trained, path, "--nbest", "--lm-weight", "2", "--length-penalty", "0.5"]
    code, out, err = txl(capsys, *argv, "--batch-size", 5)
    assert code == 0, err
    got = records(out)
    assert [g["id"] for g in got] == sorted(truths)
    first = sum(g["hypotheses"][0]["text"] == truths[g["id"]] for g in got)
    assert first >= 16, f"the true sentence ranked first for only {first} of 20"
    for g in got:
        scores = [h["score"] for h in g["hypotheses"]]
        assert scores == sorted(scores, reverse=True)
        for h in g["hypotheses"]:
            assert h["tokens"] == len(h["text"].split()) + 1  # the words and the line end
            want = h["am_score"] + 2 * h["lm_logprob"] + 0.5 * h["tokens"]
            assert h["score"] == pytest.approx(want)
    # the batch size changes no number beyond rounding
    code, out1, _ = txl(capsys, *argv, "--batch-size", 1)
    for a, b in zip(records(out1), got, strict=True):
        for h, k in zip(a["hypotheses"], b["hypotheses"], strict=True):
            assert h["text"] == k["text"]
            assert h["lm_logprob"] == pytest.approx(k["lm_logprob"], abs=1e-4)


# ---------------------------------------------------------------------------- txl score
def held_out_text(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n)]


def eval_stream_logprobs(model_dir, data, settings: SegmentSettings, tgt_len: int):
    """Per-token log-probs of the prepared test split as ``txl eval`` reads it: one stream
    (batch 1) in segments of ``tgt_len`` with the segment forward and its memory."""
    model = TransformerXLLM.from_pretrained(model_dir).eval()
    ids = torch.as_tensor(np.asarray(load_prepared(data).split("test"), dtype=np.int64))[None]
    out, mems = [], None
    with torch.no_grad():
        for s in range(0, ids.shape[1] - 1, tgt_len):
            e = min(s + tgt_len, ids.shape[1] - 1)
            res = model(ids[:, s:e], labels=ids[:, s + 1 : e + 1], mems=mems, settings=settings)
            mems = res.mems
            out.append(-res.token_nll[0])
    return ids[0], torch.cat(out)


@pytest.mark.parametrize(
    "flags, settings",
    [  # each token sees the same mem_len tokens however the stream is cut, or everything
        (["--mem-len", "12", "--same-length"], SegmentSettings(mem_len=12, same_length=True)),
        (["--mem-len", "400", "--no-same-length"], SegmentSettings(mem_len=400)),
    ],
)
def test_carry_memory_equals_eval_of_the_text_as_one_stream(
    trained, tmp_path, capsys, flags, settings
):
    lines = held_out_text(25, seed=7)
    text = tmp_path / "held_out.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # the eval stream: the text after one line end (the context of the first line's first word)
    stream = tmp_path / "stream.txt"
    stream.write_text("\n" + text.read_text(encoding="utf-8"), encoding="utf-8")
    data = tmp_path / "prepared"
    code, _, err = txl(capsys, "prepare", "text", "--train", text, "--valid", text, "--test",
                       stream, "--vocab", trained, "--out", data)  # fmt: skip
    assert code == 0, err
    code, out, err = txl(capsys, "score", trained, text, "--carry-memory", "--per-token", *flags)
    assert code == 0, err
    got = records(out)
    assert [r["id"] for r in got] == list(range(1, 26))
    ids, want = eval_stream_logprobs(trained, data, settings, tgt_len=7)
    per_token = torch.tensor([t for r in got for t in r["token_logprobs"]])
    assert len(per_token) == len(ids) - 1 == sum(r["tokens"] for r in got)
    torch.testing.assert_close(per_token, want, atol=1e-5, rtol=0)
    code, out, err = txl(capsys, "eval", trained, "--data", data, "--split", "test",
                         "--batch-size", 1, "--tgt-len", 7, *flags, "--json")  # fmt: skip
    assert code == 0, err
    info = json.loads(out)
    assert info["tokens"] == len(per_token)
    assert info["loss"] * info["tokens"] == pytest.approx(-float(per_token.sum()), abs=1e-3)
    for r in got:
        assert r["logprob"] == pytest.approx(sum(r["token_logprobs"]), abs=1e-5)
        assert r["ppl"] == pytest.approx(np.exp(-r["logprob"] / r["tokens"]))


def test_mixed_lengths_in_a_batch_equal_one_at_a_time(trained, tmp_path, capsys):
    rng = random.Random(11)
    lines = [" ".join(sentence(rng).split()[: rng.randint(1, 9)]) for _ in range(13)]
    lines[4] = ""  # an empty line is its line end alone
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, one, _ = txl(capsys, "score", trained, path, "--per-token", "--batch-size", 1)
    code, many, err = txl(capsys, "score", trained, path, "--per-token", "--batch-size", 5)
    assert code == 0, err
    one, many = records(one), records(many)
    assert [r["tokens"] for r in many] == [len(x.split()) + 1 for x in lines]
    for a, b in zip(one, many, strict=True):
        assert a["id"] == b["id"] and a["tokens"] == b["tokens"]
        np.testing.assert_allclose(a["token_logprobs"], b["token_logprobs"], atol=1e-5)


def test_reset_on_blank_documents_batched(trained, tmp_path, capsys):
    docs = [held_out_text(k, seed=20 + k) for k in (3, 1, 4, 2)]
    text = "\n\n".join("\n".join(d) for d in docs) + "\n"
    path = tmp_path / "docs.txt"
    path.write_text(text, encoding="utf-8")
    argv = ["score", trained, path, "--carry-memory", "--reset-on-blank", "--per-token"]
    _, batched, _ = txl(capsys, *argv, "--batch-size", 3)
    batched = records(batched)
    assert [r["id"] for r in batched] == list(range(1, text.count("\n") + 1))
    blanks = [r for r in batched if r["tokens"] == 0]
    assert len(blanks) == 3 and all(r["ppl"] is None for r in blanks)
    # each document alone, with memory across its lines, gives the same numbers
    scored = [r for r in batched if r["tokens"]]
    k = 0
    for d in docs:
        alone = tmp_path / "alone.txt"
        alone.write_text("\n".join(d) + "\n", encoding="utf-8")
        _, out, _ = txl(capsys, "score", trained, alone, "--carry-memory", "--per-token")
        for r in records(out):
            np.testing.assert_allclose(r["token_logprobs"], scored[k]["token_logprobs"],
                                       atol=1e-5)  # fmt: skip
            k += 1
    # and carrying the memory changes the numbers of later lines
    _, reset, _ = txl(capsys, "score", trained, alone, "--per-token")
    assert records(reset)[0]["logprob"] == pytest.approx(records(out)[0]["logprob"], abs=1e-5)
    assert records(reset)[1]["logprob"] != pytest.approx(records(out)[1]["logprob"], abs=1e-3)


def test_nbest_carry_memory_continues_the_chosen_hypothesis(trained, tmp_path, capsys):
    path = tmp_path / "nbest.tsv"
    nbest_file(path, 3, seed=5)
    code, out, err = txl(capsys, "score", trained, path, "--nbest", "--carry-memory",
                         "--per-token", "--batch-size", 2)  # fmt: skip
    assert code == 0, err
    groups = records(out)
    # the chosen hypotheses as a text scored with memory reproduce every utterance's scores
    chosen = [g["hypotheses"][0]["text"] for g in groups]
    for u in (1, 2):
        for h in groups[u]["hypotheses"]:
            conv = tmp_path / "conv.txt"
            conv.write_text("\n".join([*chosen[:u], h["text"]]) + "\n", encoding="utf-8")
            _, lines, _ = txl(capsys, "score", trained, conv, "--carry-memory", "--per-token")
            last = records(lines)[-1]
            np.testing.assert_allclose(h["token_logprobs"], last["token_logprobs"], atol=1e-5)


def test_unknown_words_are_unk_and_counted(trained, tmp_path, capsys):
    path = tmp_path / "oov.txt"
    path.write_text("the zebra sees a quokka .\nthe cat sees the ball .\n", encoding="utf-8")
    code, out, err = txl(capsys, "score", trained, path)
    assert code == 0, err
    assert [r["unk"] for r in records(out)] == [2, 0]
    assert [r["tokens"] for r in records(out)] == [7, 7]


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "content, nbest, expect",
    [
        (b"u1\tthe cat .\t1.0\nu1 the dog .\n", True, "line 2: expected UTT_ID<TAB>"),
        (b"u1\tthe cat .\tabc\n", True, "line 1: am_score 'abc'"),
        (b"u1\tthe cat .\tnan\n", True, "line 1: am_score 'nan'"),
        (b"\tthe cat .\n", True, "line 1: expected UTT_ID<TAB>"),
        (b"u1\ta\tb\tc\n", True, "line 1: expected UTT_ID<TAB>"),
        (b"the cat .\nthe \xff dog\n", False, "line 2: not UTF-8"),
        (b"u1\tthe cat\n\xc3(\n", True, "line 2: not UTF-8"),
    ],
)
def test_bad_input_exits_2_naming_the_line(trained, tmp_path, capsys, content, nbest, expect):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    code, _, err = txl(capsys, "score", trained, path, *(["--nbest"] if nbest else []))
    assert code == 2
    assert expect in error_line(err)


def test_a_model_without_vocabulary_is_refused(tmp_path, capsys, model):
    model.save_pretrained(tmp_path / "bare")
    (tmp_path / "t.txt").write_text("a\n", encoding="utf-8")
    code, _, err = txl(capsys, "score", tmp_path / "bare", tmp_path / "t.txt")
    assert code == 2 and "no vocab.json" in error_line(err)


def test_stdin_and_bf16(trained, tmp_path, capsys, monkeypatch):
    text = "the cat sees a tree in the park .\nthe dog finds the car at home .\n"
    path = tmp_path / "two.txt"
    path.write_text(text, encoding="utf-8")
    _, out, _ = txl(capsys, "score", trained, path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, piped, err = txl(capsys, "score", trained, "-", "--precision", "bf16")
    assert code == 0, err
    for a, b in zip(records(out), records(piped), strict=True):
        assert a["tokens"] == b["tokens"]
        assert b["logprob"] == pytest.approx(a["logprob"], rel=0.05)
