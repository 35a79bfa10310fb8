"""``txl score`` under arbitrary input (Hypothesis): every generated file, n-best list and flag
value either scores correctly (exit 0, one record per line or utterance) or ends with exit 2 and
one line naming the file and line (or the flag); never a traceback, never a changed input file.
Also: long sequences read in bounded chunks, and the segment defaults of a run folder."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transformer_xl import Scorer, TransformerXLConfig, TransformerXLLM
from transformer_xl.cli import main
from transformer_xl.data.vocab import Vocab
from transformer_xl.segment import SegmentSettings

WORDS = ["<eos>", "<unk>", "the", "cat", "sat", "on", "mat", "dog", "a", "b"]
PROPERTY = settings(
    derandomize=True,
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = TransformerXLConfig(
        vocab_size=len(WORDS), n_layer=1, n_head=2, d_model=8, d_head=4, d_inner=16,
        dropout=0.0, segment=SegmentSettings(tgt_len=4, mem_len=4),
    )  # fmt: skip
    path = tmp_path_factory.mktemp("score_props") / "model"
    TransformerXLLM(cfg).save_pretrained(path)
    Vocab(WORDS, "word", eos_token="<eos>", unk_token="<unk>").save(path / "vocab.json")
    return path


def txl(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def scored(folder: Path, path: Path, *flags: str) -> tuple[int, str, str]:
    before = path.read_bytes()
    result = txl("score", folder, path, "--device", "cpu", *flags)
    assert path.read_bytes() == before  # the input is never changed
    return result


# a line: words (known and not), tabs, spaces, stray CRs, and now and then bytes that are
# not text (invalid UTF-8, NUL)
PIECES = st.sampled_from(
    [b"the", b"cat", b"sat", b"zebra", b"\xc3\xa9t\xc3\xa9", b" ", b"  ", b"\t", b"\r", b"."]
)
BAD = st.sampled_from([b"\xff", b"\x00", b"\xc3(", b"\xe2\x82"])
LINE = st.lists(st.one_of(PIECES, PIECES, PIECES, BAD), max_size=8).map(b"".join)


def first_bad_line(lines: list[bytes]) -> int | None:
    for k, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return k
        if "\0" in text:
            return k
    return None


@given(
    lines=st.lists(LINE, max_size=6),
    bom=st.booleans(),
    crlf=st.booleans(),
    final=st.booleans(),
    mode=st.sampled_from([[], ["--carry-memory"], ["--carry-memory", "--reset-on-blank"]]),
    batch=st.integers(1, 5),
)
@PROPERTY
def test_any_text_file_scores_or_names_its_line(folder, tmp_path, lines, bom, crlf, final,
                                                mode, batch):  # fmt: skip
    end = b"\r\n" if crlf else b"\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + end.join(lines) + (end if final and lines else b"")
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    code, out, err = scored(folder, path, *mode, "--batch-size", str(batch))
    physical = data.split(b"\n")
    if physical and physical[-1] == b"":
        physical.pop()  # the last line's end
    physical = [p.removesuffix(b"\r") for p in physical]
    if physical and bom:
        physical[0] = physical[0].removeprefix(b"\xef\xbb\xbf")
    bad = first_bad_line(physical)
    if bad is not None:
        assert code == 2
        assert f"{path}: line {bad}: " in error_line(err)
        return
    assert code == 0, err
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["id"] for r in recs] == list(range(1, len(physical) + 1))
    for r, raw in zip(recs, physical, strict=True):
        text = raw.decode("utf-8")
        if "--reset-on-blank" in mode and not text.strip():
            assert r["tokens"] == 0 and r["ppl"] is None
            continue
        words = text.split()
        assert r["tokens"] == len(words) + 1  # the words and the line end
        assert r["unk"] == sum(w not in WORDS for w in words)
        assert r["logprob"] <= 0 and math.isfinite(r["logprob"])


AM = st.one_of(
    st.floats(-50, 50, allow_nan=False).map(lambda x: f"{x:.3f}"),
    st.sampled_from(["nan", "inf", "-Infinity", "1e999", "1_0", "abc", "", " 2.5 ", "0x10"]),
)
HYP = st.tuples(
    st.sampled_from(["u1", "u2", "u3", "", " u1"]),
    st.lists(st.sampled_from(["the", "cat", "zebra", "\t"]), max_size=4).map(" ".join),
    st.one_of(st.none(), AM),
)


def line_of(hyp) -> str:
    utt, text, am = hyp
    return "\t".join([utt, text] + ([] if am is None else [am]))


def expected_failure(hyps) -> int | None:
    """The first line ``txl score --nbest`` must refuse (1-based), or None."""
    ended, current = set(), None
    for k, hyp in enumerate(hyps, 1):
        utt, *rest = line_of(hyp).split("\t")
        if len(rest) not in (1, 2) or not utt.strip():
            return k
        am = rest[1].strip() if len(rest) == 2 else "0"
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", am):
            return k
        if not math.isfinite(float(am)):
            return k
        if utt.strip() != current:
            if utt.strip() in ended:
                return k
            if current is not None:
                ended.add(current)
            current = utt.strip()
    return None


@given(
    hyps=st.lists(HYP, min_size=1, max_size=7),
    carry=st.booleans(),
    batch=st.integers(1, 4),
    weight=st.sampled_from(["0.5", "1", "-2"]),
)
@PROPERTY
def test_any_nbest_list_ranks_or_names_its_line(folder, tmp_path, hyps, carry, batch, weight):
    path = tmp_path / "nbest.tsv"
    path.write_text("\n".join(map(line_of, hyps)) + "\n", encoding="utf-8")
    flags = ["--nbest", "--batch-size", str(batch), "--lm-weight", weight]
    code, out, err = scored(folder, path, *flags, *(["--carry-memory"] if carry else []))
    bad = expected_failure(hyps)
    if bad is not None:
        assert code == 2
        assert f"{path}: line {bad}: " in error_line(err)
        return
    assert code == 0, err
    groups: list[list] = []
    for h in hyps:
        if groups and groups[-1][0] == h[0].strip():
            groups[-1][1].append(h)
        else:
            groups.append([h[0].strip(), [h]])
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["id"] for r in recs] == [g[0] for g in groups]
    for rec, (_, members) in zip(recs, groups, strict=True):
        got = rec["hypotheses"]
        assert sorted(e["text"] for e in got) == sorted(line_of(m).split("\t")[1] for m in members)
        assert [e["score"] for e in got] == sorted((e["score"] for e in got), reverse=True)
        for e in got:
            want = e["am_score"] + float(weight) * e["lm_logprob"]
            assert e["score"] == pytest.approx(want)


FLAG_VALUES = st.sampled_from(
    ["0", "-1", "1", "3", "1e3", "abc", "", "nan", "inf", "1_0", "99999999999999999999", "2.5"]
)


@given(
    flag=st.sampled_from(
        ["--batch-size", "--mem-len", "--clamp-len", "--lm-weight", "--length-penalty", "--threads"]
    ),  # fmt: skip
    value=FLAG_VALUES,
    nbest=st.booleans(),
)
@PROPERTY
def test_any_flag_value_is_used_or_refused_by_name(folder, tmp_path, flag, value, nbest):
    path = tmp_path / "in.txt"
    path.write_text("u1\tthe cat\t-1\n" if nbest else "the cat\n", encoding="utf-8")
    code, out, err = scored(folder, path, *(["--nbest"] if nbest else []), f"{flag}={value}")
    if code == 0:
        assert len(out.splitlines()) == 1
        return
    assert code == 2 and not out
    assert flag in error_line(err) or flag.lstrip("-").replace("-", "_") in error_line(err)


# ---------------------------------------------------------------------------- mechanisms
def test_long_sequences_are_read_in_chunks_with_memory():
    """A sequence longer than ``chunk_len`` is read as its pieces one call after another."""
    torch.manual_seed(1)
    cfg = TransformerXLConfig(vocab_size=12, n_layer=2, n_head=2, d_model=8, d_head=4,
                              d_inner=16, dropout=0.0,
                              segment=SegmentSettings(tgt_len=4, mem_len=5))  # fmt: skip
    model = TransformerXLLM(cfg).eval()
    seq = torch.randint(0, 12, (11,)).tolist()
    whole = Scorer(model, 2, start_ids=[0])
    whole.chunk_len = 4
    got = whole.score([seq, seq[:3]])
    piecewise = Scorer(model, 1, start_ids=[0])
    want = torch.cat([piecewise.score([seq[k : k + 4]])[0] for k in range(0, 11, 4)])
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=0)
    assert got[1].shape == (3,)
    assert whole.memory_lengths == [5, 3]  # start id + 2 read (the last one is read next)
