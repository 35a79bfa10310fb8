"""``txl export --format onnx``: the graph in onnxruntime against the PyTorch model, segment by
segment with memory (from empty, growing, full), for byte, word-with-adaptive-softmax and BPE
models; the metadata; streams reset on their own; the streaming loop in a process without
torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from transformer_xl.cli import main  # noqa: E402
from transformer_xl.config import TransformerXLConfig  # noqa: E402
from transformer_xl.data.tokenizer import BPETokenizer, make_tokenizer, save_tokenizer  # noqa: E402
from transformer_xl.data.vocab import Vocab  # noqa: E402
from transformer_xl.export.onnx_runtime import OnnxLM  # noqa: E402
from transformer_xl.model.transformer import TransformerXLLM  # noqa: E402
from transformer_xl.segment import FIELDS as SEGMENT_FIELDS  # noqa: E402
from transformer_xl.segment import SegmentSettings  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
TEXT = "the cat sat on the mat\nand the dog sat on the cat\n" * 2
WORDS = ["<eos>", "<unk>", *sorted(set(TEXT.split())), *[f"w{i}" for i in range(22)]]  # 30
KINDS = {
    "byte": dict(cutoffs=(), div_val=1, same_length=True, clamp_len=5),
    # adaptive input and softmax: three clusters of narrowing width, projections tied but
    # for the head cluster (the WikiText-103 layout)
    "word": dict(cutoffs=(10, 20), div_val=2, tie_projs=(False, True, True)),
    "bpe": dict(cutoffs=(), div_val=1, pre_lnorm=True),
}
MEM, TGT = 6, 4
LENGTHS = (4, 3, 5, 1, 4)  # from empty memory: 0, 4, 6 (full from here), 6, 6 rows before


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tokenizer(kind: str):
    if kind == "byte":
        return make_tokenizer(Vocab([str(i) for i in range(256)], "byte"))
    if kind == "word":
        return make_tokenizer(Vocab(WORDS, "word", eos_token="<eos>", unk_token="<unk>"))
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=280, initial_alphabet=alphabet, show_progress=False)
    hf.train_from_iterator([TEXT] * 20, trainer)
    vocab = Vocab([hf.id_to_token(i) for i in range(hf.get_vocab_size())], "bpe")
    return BPETokenizer(vocab, hf)


def tiny_model(vocab_size: int, seed: int = 0, **fields) -> TransformerXLLM:
    """A small model; segment fields among ``fields`` change its settings (tgt TGT, mem MEM)."""
    run = {k: fields.pop(k) for k in SEGMENT_FIELDS if k in fields}
    cfg = TransformerXLConfig(
        vocab_size=vocab_size, n_layer=2, n_head=2, d_model=16, d_head=8, d_inner=24,
        dropout=0.0, segment=SegmentSettings(tgt_len=TGT, mem_len=MEM).replace(**run), **fields,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = TransformerXLLM(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # weights large enough for peaked, position-dependent predictions
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("ln.weight") else 0.0
            p.copy_(base + 0.3 * torch.randn(p.shape, generator=gen))
    return model.eval()


def model_folder(tmp_path: Path, kind: str, **fields) -> tuple[Path, TransformerXLLM]:
    folder = tmp_path / f"{kind}_model"
    tok = _tokenizer(kind)
    model = tiny_model(len(tok.vocab), **{**KINDS[kind], **fields})
    model.save_pretrained(folder)
    save_tokenizer(tok, folder)
    return folder, model


def export(folder: Path, out: Path, *extra: str) -> Path:
    assert main(["export", str(folder), "--format", "onnx", "--out", str(out), *extra]) == 0
    return out


def torch_segments(model, ids, lengths, mems=None):
    """PyTorch log-probs ``[B, sum(lengths), V]`` over ``ids`` cut into ``lengths``, with memory."""
    out, s = [], 0
    with torch.no_grad():
        for n in lengths:
            o = model(torch.as_tensor(ids[:, s : s + n]), mems=mems, return_log_probs=True)
            mems, s = o.mems, s + n
            out.append(o.log_probs)
    return torch.cat(out, 1).numpy(), mems


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_segments_match_pytorch(tmp_path, kind, capsys):
    folder, model = model_folder(tmp_path, kind)
    lm = OnnxLM(export(folder, tmp_path / "onnx"))
    assert "graph: input_ids [B, T], mems [2, B, 6, 16]" in capsys.readouterr().out
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, (2, sum(LENGTHS)))
    want, _ = torch_segments(model, ids, LENGTHS)
    state, got, s = lm.start(2), [], 0
    for n in LENGTHS:
        log_probs, state = lm.step(ids[:, s : s + n], state)
        s += n
        assert state.mem_length.tolist() == [min(s, MEM)] * 2
        got.append(log_probs)
    got = np.concatenate(got, 1)
    assert got.shape == want.shape == (2, sum(LENGTHS), model.config.vocab_size)
    assert np.abs(got - want).max() <= 1e-4
    assert np.allclose(np.exp(got).sum(-1), 1.0, atol=1e-4)  # every cluster in the softmax
    # batch 1 and another segment length run in the same graph
    one, _ = lm.step(ids[:1, :7], lm.start(1))
    assert np.abs(one - torch_segments(model, ids[:1], [7])[0]).max() <= 1e-4


def test_metadata_in_the_graph_and_beside_it(tmp_path):
    folder, model = model_folder(tmp_path, "word")
    out = export(folder, tmp_path / "onnx", "--mem-len", "5", "--tgt-len", "3")
    info = json.loads((out / "export.json").read_text())
    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert set(props) == set(info)
    for key, value in info.items():
        assert props[key] == (value if isinstance(value, str) else json.dumps(value))
    v = model.config.vocab_size
    assert (info["vocab_size"], info["n_layer"], info["d_model"], info["mem_len"]) == (v, 2, 16, 5)
    assert info["eos_id"] == 0 and info["tokenizer_kind"] == "word"
    assert info["segment"]["tgt_len"] == 3 and info["segment"]["mem_len"] == 5
    assert Vocab.load(out / "vocab.json") == Vocab.load(folder / "vocab.json")
    graph = onnx.load(str(out / "model.onnx")).graph
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*graph.input, *graph.output]
    }
    assert dims["input_ids"] == ["batch", "time"] and dims["mem_length"] == ["batch"]
    assert dims["mems"] == dims["new_mems"] == [2, "batch", 5, 16]
    assert dims["log_probs"] == ["batch", "time", v]
    bpe, _ = model_folder(tmp_path, "bpe")
    out = export(bpe, tmp_path / "bpe_onnx")
    assert (out / "tokenizer.json").read_bytes() == (bpe / "tokenizer.json").read_bytes()
    assert json.loads((out / "export.json").read_text())["tokenizer_files"] == [
        "vocab.json", "tokenizer.json"]  # fmt: skip


def test_one_stream_reset_while_the_other_goes_on(tmp_path):
    """Rows outside ``mem_length`` are hidden whatever they hold: a stream restarted with
    ``mem_length 0`` (its stale memory left in place) scores as a new PyTorch stream."""
    folder, model = model_folder(tmp_path, "word")
    lm = OnnxLM(export(folder, tmp_path / "onnx"))
    ids = np.random.default_rng(2).integers(0, 30, (2, 16))
    state = lm.start(2)
    for s in (0, 4):
        _, state = lm.step(ids[:, s : s + 4], state)
    state.mem_length[1] = 0  # stream 1 restarts; its rows keep the old hidden states
    state.mems[:, 1] += 5.0
    got = []
    for s in (8, 12):
        log_probs, state = lm.step(ids[:, s : s + 4], state)
        got.append(log_probs)
    got = np.concatenate(got, 1)
    assert state.mem_length.tolist() == [6, 6]
    cont, _ = torch_segments(model, ids[:1], [4, 4, 4, 4])
    fresh, _ = torch_segments(model, ids[1:, 8:], [4, 4])
    assert np.abs(got[0] - cont[0, 8:]).max() <= 1e-4
    assert np.abs(got[1] - fresh[0]).max() <= 1e-4


def test_key_count_across_the_padding_threshold(tmp_path):
    """From 64 distances the attention pads its position scores (BLAS-friendly widths) and
    slices them: the traced graph must be right for every segment length on both sides."""
    folder, model = model_folder(tmp_path, "byte", mem_len=61, same_length=False, clamp_len=-1)
    lm = OnnxLM(export(folder, tmp_path / "onnx"))
    ids = np.random.default_rng(3).integers(0, 256, (1, 120))
    lengths = (40, 21, 1, 2, 3, 4, 17, 32)  # K + 1 from 41 up to 94, padded or not
    want, _ = torch_segments(model, ids, lengths)
    state, got, s = lm.start(1), [], 0
    for n in lengths:
        log_probs, state = lm.step(ids[:, s : s + n], state)
        got.append(log_probs)
        s += n
    assert np.abs(np.concatenate(got, 1) - want).max() <= 1e-4


LOOP = """
import json, sys
sys.modules["torch"] = None  # any import of torch fails
from transformer_xl.export.onnx_runtime import OnnxLM
lm = OnnxLM(sys.argv[1], threads=1)
ids = lm.encode(sys.argv[2])
scores, state = lm.score([ids])
more, _ = lm.score([ids[-1:] + ids[:5]], state)
new, _ = lm.greedy(ids, 6)
print(json.dumps({"ids": ids, "scores": scores[0].tolist(), "more": more[0].tolist(),
                  "greedy": new, "text": lm.decode(new),
                  "torch": [m for m, v in sys.modules.items() if m.split(".")[0] == "torch" and v]}))
"""


def torch_greedy(model, prompt, n, tgt_len):
    out, mems = [], None
    with torch.no_grad():
        for s in range(0, len(prompt), tgt_len):
            o = model(torch.tensor([prompt[s : s + tgt_len]]), mems=mems, return_log_probs=True)
            mems = o.mems
        for _ in range(n):
            out.append(int(o.log_probs[0, -1].argmax()))
            o = model(torch.tensor([[out[-1]]]), mems=mems, return_log_probs=True)
            mems = o.mems
    return out


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_streaming_loop_without_torch(tmp_path, kind):
    folder, model = model_folder(tmp_path, kind)
    out = export(folder, tmp_path / "onnx")
    text = "the cat sat on the mat\nand the dog"
    proc = subprocess.run(
        [sys.executable, "-c", LOOP, str(out), text], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["torch"] == []
    ids = got["ids"]
    n = len(ids) - 1
    lengths = [TGT] * (n // TGT) + ([n % TGT] if n % TGT else [])
    want, mems = torch_segments(model, np.asarray([ids[:-1]]), lengths)
    picked = np.take_along_axis(want[0], np.asarray(ids[1:])[:, None], 1)[:, 0]
    assert np.abs(np.asarray(got["scores"]) - picked).max() <= 1e-4
    # the state carried into the next call: the memory of the whole text
    nxt = [ids[-1], *ids[:5]]
    more, _ = torch_segments(model, np.asarray([nxt[:-1]]), [4, 1], mems)
    picked = np.take_along_axis(more[0], np.asarray(nxt[1:])[:, None], 1)[:, 0]
    assert np.abs(np.asarray(got["more"]) - picked).max() <= 1e-4
    assert got["greedy"] == torch_greedy(model, ids, 6, TGT)
    assert isinstance(got["text"], str)


def test_bad_requests_exit_2(tmp_path, capsys):
    folder, _ = model_folder(tmp_path, "byte")
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx", "--out",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    assert "nope" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["export", str(folder), "--format", "onnx", "--out", str(tmp_path / "full")]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", str(folder), "--format", "onnx", "--out", "o", "--mem-len", "0"])
    assert e.value.code == 2
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "export.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an ONNX export"):
        OnnxLM(tmp_path / "e")
    lm = OnnxLM(export(folder, tmp_path / "ok"))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 256\): found 0..256"):
        lm.step([[0, 256]], lm.start(1))
    with pytest.raises(ValueError, match=r"expected \[batch=2, T >= 1\]"):
        lm.step([[0, 1]], lm.start(2))


@pytest.mark.parametrize("attn_type", [1, 2, 3])
def test_the_other_attention_types(tmp_path, attn_type):
    """The graph is the model's own layer loop, so the ablation's attention variants (learnable
    relative tables, absolute positions) export too, their positions counted from the last key."""
    folder, model = model_folder(tmp_path, "word", attn_type=attn_type)
    lm = OnnxLM(export(folder, tmp_path / "onnx"))
    ids = np.random.default_rng(4).integers(0, model.config.vocab_size, (2, sum(LENGTHS)))
    want, _ = torch_segments(model, ids, LENGTHS)
    state, got, s = lm.start(2), [], 0
    for n in LENGTHS:
        log_probs, state = lm.step(ids[:, s : s + n], state)
        got.append(log_probs)
        s += n
    assert np.abs(np.concatenate(got, 1) - want).max() <= 1e-4
