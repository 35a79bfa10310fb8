"""The authors' PyTorch checkpoints: ``torch.save(model)`` of their ``MemTransformerLM`` (zip and
legacy formats) and plain state dicts, loaded without running code from the file, converted,
and compared token by token with the authors' module classes (tests/authors_ref: their
mem_transformer.py / proj_adaptive_softmax.py written again with the same module, class and
attribute names, so the pickles are laid out as theirs)."""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from convert_helpers import (
    one_thread,  # noqa: F401  (autouse fixture)
    segment_log_probs,
)
from transformer_xl.cli import main
from transformer_xl.convert.original import load_original
from transformer_xl.data.vocab import Vocab
from transformer_xl.weights import load_pretrained

V, B, T, MEM, CLAMP, SEGMENTS = 24, 2, 4, 5, 3, 3
CONFIGS = {
    # WikiText-103 large layout: div_val > 1, projections tied but for the head cluster
    "wt103_large": dict(cutoffs=[8, 14, 20], div_val=2, tie_projs=[False, True, True, True]),
    # WikiText-103 base layout: one table, d_embed != d_model, per-cluster output projections
    "wt103_base": dict(
        cutoffs=[8, 14, 20], div_val=1, d_embed=6, tie_projs=[False, True, False, True]
    ),
    # character models: no clusters; here untied output weights and pre-LN
    "enwik8": dict(cutoffs=[], div_val=1, tie_weight=False, pre_lnorm=True),
}  # fmt: skip


@pytest.fixture
def authors(monkeypatch):
    """The reference package on sys.path under the authors' module names."""
    here = os.path.join(os.path.dirname(__file__), "authors_ref")
    monkeypatch.syspath_prepend(here)
    import mem_transformer

    return mem_transformer


def reference_model(authors, name, seed=0, **extra):
    torch.manual_seed(seed)
    kw = dict(CONFIGS[name], **extra)
    model = authors.MemTransformerLM(
        V, 2, 2, 8, 4, 12, 0.0, 0.0, tgt_len=T, ext_len=0, mem_len=MEM, same_length=True,
        clamp_len=CLAMP, **kw,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            base = 1.0 if pname.endswith("layer_norm.weight") else 0.0
            p.copy_(base + 0.4 * torch.randn(p.shape, generator=gen))
    return model.eval()


def reference_log_probs(model, ids):
    """The authors' model over segments with memory (their n_layer + 1 tensors, starting
    empty): full log-probabilities from their softmax asked for every target in token order,
    and the mean loss of their forward (per-token losses grouped by cluster)."""
    mems, full, losses = model.init_mems(), [], []
    with torch.no_grad():
        for s in range(0, ids.shape[1] - 1, T):
            x, y = ids[:, s : s + T].t(), ids[:, s + 1 : s + T + 1].t()
            hidden, _ = model._forward(x, mems=mems)
            flat = hidden.reshape(-1, hidden.shape[-1])
            cols = [
                -model.crit(flat, torch.full((flat.shape[0],), v), keep_order=True)
                for v in range(V)
            ]
            full.append(torch.stack(cols, -1).view(T, B, V).transpose(0, 1))
            out = model(x, y, *mems)
            assert len(out) == 1 + model.n_layer + 1
            losses.append(out[0].mean())
            mems = out[1:]
    return torch.cat(full, 1), torch.stack(losses)


def check_parity(ours, ref):
    ids = torch.randint(0, V, (B, SEGMENTS * T + 1), generator=torch.Generator().manual_seed(5))
    want, want_loss = reference_log_probs(ref, ids)
    got = segment_log_probs(ours, ids[:, :-1], tgt_len=T)  # the run defaults came from the file
    assert (got - want).abs().max().item() <= 1e-5
    nll = -got.gather(2, ids[:, 1:, None]).squeeze(2)
    got_loss = nll.view(B, SEGMENTS, T).mean(dim=(0, 2))
    assert (got_loss - want_loss).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "name, layout",
    [("wt103_large", "zip"), ("wt103_base", "legacy"), ("enwik8", "legacy"),
     ("wt103_large", "state_dict"), ("wt103_base", "state_dict"), ("enwik8", "state_dict")],
)  # fmt: skip
def test_parity_with_the_authors_model(tmp_path, authors, name, layout):
    ref = reference_model(authors, name)
    path = tmp_path / "model.pt"
    if layout == "state_dict":
        torch.save(ref.state_dict(), path)
    else:
        torch.save(ref, path, _use_new_zipfile_serialization=layout == "zip")
    adjust = None
    if layout == "state_dict":  # shapes only: the run settings and pre-LN are not in the file

        def adjust(c):
            pre = CONFIGS[name].get("pre_lnorm", False)
            run = c.segment.replace(mem_len=MEM, clamp_len=CLAMP, same_length=True)
            return c.replace(segment=run, pre_lnorm=pre)

    ours, counts = load_original(path, cutoffs=CONFIGS[name]["cutoffs"], adjust=adjust)
    cfg = ours.eval().config
    s = cfg.segment
    assert s.window_keys == "mem_len" and not cfg.untie_r
    assert (s.mem_len, s.clamp_len, s.same_length) == (MEM, CLAMP, True)
    assert cfg.pre_lnorm == CONFIGS[name].get("pre_lnorm", False)
    if layout != "state_dict":  # the pickled model carries its settings
        assert s.tgt_len == T and cfg.dropout == 0.0
    assert counts["converted"] == len(ours.state_dict())
    assert counts["skipped"] >= 1  # pos_emb.inv_freq at least
    check_parity(ours, ref)


def test_ties_are_read_from_the_tensors(authors, tmp_path):
    ref = reference_model(authors, "wt103_base")
    torch.save(ref, tmp_path / "m.pt")
    cfg = load_original(tmp_path / "m.pt")[0].config
    assert cfg.tie_weight and cfg.tie_projs == (False, True, False, True)
    assert cfg.cutoffs == (8, 14, 20) and cfg.d_embed == 6 and cfg.div_val == 1
    ref = reference_model(authors, "enwik8")
    torch.save(ref, tmp_path / "e.pt")
    assert not load_original(tmp_path / "e.pt")[0].config.tie_weight


def test_data_parallel_wrapper_and_legacy_checkpoint_dict(authors, tmp_path):
    ref = reference_model(authors, "wt103_large")
    torch.save(torch.nn.DataParallel(ref), tmp_path / "dp.pt", _use_new_zipfile_serialization=False)
    check_parity(load_original(tmp_path / "dp.pt")[0].eval(), ref)
    torch.save({"model": ref.state_dict(), "epoch": 3}, tmp_path / "ck.pt")

    def run_settings(c):  # a state dict does not carry them
        return c.replace(segment=c.segment.replace(mem_len=MEM, clamp_len=CLAMP, same_length=True))

    check_parity(load_original(tmp_path / "ck.pt", adjust=run_settings)[0].eval(), ref)


def test_sampled_softmax_model(authors, tmp_path):
    """With sample_softmax their model has its own untied ``out_layer`` and no ``crit``;
    evaluation is the full softmax over it."""
    ref = reference_model(authors, "enwik8", sample_softmax=6, tie_weight=False)
    torch.save(ref, tmp_path / "s.pt")
    ours = load_original(tmp_path / "s.pt")[0].eval()
    assert ours.config.sample_softmax == 6 and not ours.config.tie_weight
    ids = torch.randint(0, V, (B, T))
    with torch.no_grad():
        hidden, _ = ref._forward(ids.t(), mems=ref.init_mems())
        want = F.log_softmax(ref.out_layer(hidden), -1).transpose(0, 1)
        got = ours(ids, return_log_probs=True).log_probs
    assert (got - want).abs().max().item() <= 1e-5


# ------------------------------------------------------------------ safe loading
class Payload:
    """Unpickling this runs a shell command (a classic malicious pickle)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_refuses_code_in_the_file(authors, tmp_path, legacy):
    marker = tmp_path / "pwned"
    ref = reference_model(authors, "wt103_large")
    ref.extra = Payload(marker)  # hidden in a module attribute
    path = tmp_path / "model.pt"
    torch.save(ref, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ValueError, match=r"refusing to load.*'posix\.system'"):
        load_original(path)
    torch.save(
        {"w": torch.zeros(2), "x": Payload(marker)}, path, _use_new_zipfile_serialization=not legacy
    )
    with pytest.raises(ValueError, match=r"'posix\.system'"):
        load_original(path)
    assert not marker.exists()


def test_refuses_unknown_classes_by_name(tmp_path, capsys):
    import collections

    torch.save({"w": torch.zeros(2), "q": collections.deque([1])}, tmp_path / "m.pt")
    assert main(["convert", "--from", "original", str(tmp_path / "m.pt"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "collections.deque" in err and "refusing" in err
    assert not (tmp_path / "o").exists()


def test_clear_errors(authors, tmp_path):
    ref = reference_model(authors, "wt103_base")
    torch.save(ref.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="does not record the cutoffs.*--cutoffs"):
        load_original(tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="2 cutoffs given but the softmax has 4 clusters"):
        load_original(tmp_path / "sd.pt", cutoffs=[8, 14])
    ref.attn_type = 2
    torch.save(ref, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="attn_type=2"):
        load_original(tmp_path / "a.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="no 'layers.K.' tensors"):
        load_original(tmp_path / "w.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_original(tmp_path / "junk.pt")


# ------------------------------------------------------------------ with the corpus cache
def _fake_authors_data_modules(monkeypatch):
    """``data_utils.Corpus`` and ``utils.vocabulary.Vocab`` as the authors' PyTorch code names
    them, so that torch.save writes their corpus cache (cache.pt) as theirs does."""
    data_utils, utils, vocabulary = (
        types.ModuleType(n) for n in ("data_utils", "utils", "utils.vocabulary")
    )
    corpus_cls = type("Corpus", (), {"__module__": "data_utils"})
    vocab_cls = type("Vocab", (), {"__module__": "utils.vocabulary"})
    data_utils.Corpus, vocabulary.Vocab, utils.vocabulary = corpus_cls, vocab_cls, vocabulary
    for name, mod in (
        ("data_utils", data_utils),
        ("utils", utils),
        ("utils.vocabulary", vocabulary),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    return corpus_cls, vocab_cls


def test_command_with_the_corpus_cache(authors, tmp_path, monkeypatch, capsys):
    from collections import Counter, OrderedDict

    corpus_cls, vocab_cls = _fake_authors_data_modules(monkeypatch)
    symbols = ["<eos>", "the", ",", "<unk>"] + [f"w{i}" for i in range(V - 4)]
    vocab = vocab_cls()
    vocab.__dict__.update(
        counter=Counter({s: 9 for s in symbols}), special=["<eos>"], min_freq=0, max_size=None,
        lower_case=False, delimiter=None, vocab_file=None, idx2sym=symbols,
        sym2idx=OrderedDict((s, i) for i, s in enumerate(symbols)), eos_idx=0,
    )  # fmt: skip
    corpus = corpus_cls()
    splits = dict(train=torch.arange(50), valid=torch.arange(9), test=torch.arange(7))
    corpus.__dict__.update(dataset="wt103", vocab=vocab, **splits)
    torch.save(corpus, tmp_path / "cache.pt")
    ref = reference_model(authors, "wt103_large")
    torch.save(ref, tmp_path / "model.pt", _use_new_zipfile_serialization=False)

    out = tmp_path / "out"
    args = ["convert", "--from", "original", str(tmp_path / "model.pt"), str(out),
            "--vocab-file", str(tmp_path / "cache.pt")]  # fmt: skip
    assert main(args) == 0
    assert "24 tokens (word)" in capsys.readouterr().out
    v = Vocab.load(out / "vocab.json")
    assert list(v.tokens) == symbols and v.eos_token == "<eos>" and v.unk_token == "<unk>"
    check_parity(load_pretrained(out).eval(), ref)


class _Backend04:
    """PyTorch 0.4 gave every module a ``_backend`` attribute, pickled as a call to this."""

    def __reduce__(self):
        import torch.nn.backends.thnn

        return (torch.nn.backends.thnn._get_thnn_function_backend, ())


@pytest.mark.parametrize("legacy", [False, True])
def test_pytorch_0_4_era_attributes(authors, tmp_path, legacy):
    ref = reference_model(authors, "wt103_large")
    for m in ref.modules():
        m._backend = _Backend04()
    torch.save(ref, tmp_path / "m.pt", _use_new_zipfile_serialization=not legacy)
    del ref._backend  # the reference itself runs as before
    check_parity(load_original(tmp_path / "m.pt")[0].eval(), ref)
