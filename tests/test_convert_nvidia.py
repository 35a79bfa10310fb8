"""``txl convert --from nvidia``: checkpoints in the exact layout NVIDIA DeepLearningExamples'
``train.py`` saves (a dict of ``args`` namespace, ``model_config``, ``model_state`` with their
parameter names, their corpus ``Vocab`` object, optimizer/scheduler/random/AMP states), scored
against a small reference written here from their parameter names and their model's arithmetic
(time-major, their relative shift, their same-length mask, their adaptive softmax with tail
clusters read from the end of the head); and TorchScript archives of their inference model
(tests/nvidia_jit.py)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import types
from collections import Counter, OrderedDict

import pytest
import torch
import torch.nn.functional as F

from convert_helpers import one_thread, segment_log_probs  # noqa: F401  (autouse fixture)
from nvidia_jit import MemTransformerLM
from transformer_xl.cli import main
from transformer_xl.convert.nvidia import load_nvidia, read_nvidia
from transformer_xl.data.vocab import Vocab
from transformer_xl.weights import load_pretrained

V, B, T, MEM, CLAMP, SEGMENTS = 24, 2, 4, 5, 3, 3
L, H, DH, D, DI = 2, 2, 4, 8, 12
LAYOUTS = {
    # WikiText-103 as they train it: four clusters, div_val 2, projections tied but the head's
    "wt103": dict(cutoffs=[8, 14, 20], div_val=2, tie_projs=[False, True, True, True],
                  tie_weight=True, d_embed=D, pre_lnorm=False, same_length=True),
    # one table narrower than the model, per-cluster output projections, two of them tied
    "narrow": dict(cutoffs=[8, 14, 20], div_val=1, tie_projs=[False, True, False, True],
                   tie_weight=True, d_embed=6, pre_lnorm=False, same_length=False),
    # characters: one cluster, untied output weights, pre-LN
    "enwik8": dict(cutoffs=[], div_val=1, tie_projs=[False], tie_weight=False, d_embed=D,
                   pre_lnorm=True, same_length=True),
}  # fmt: skip


def model_config(name: str) -> dict:
    return dict(
        n_token=V, n_layer=L, n_head=H, d_model=D, d_head=DH, d_inner=DI, dropout=0.1,
        dropatt=0.0, dtype=None, tgt_len=T, ext_len=0, mem_len=MEM, attn_type=0,
        clamp_len=CLAMP, sample_softmax=-1, **LAYOUTS[name],
    )  # fmt: skip


def their_state(mc: dict, seed: int = 0) -> OrderedDict:
    """A ``MemTransformerLM.state_dict()`` as theirs names and shapes it, random values."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, base=0.0):
        return base + 0.4 * torch.randn(shape, generator=gen)

    ends = [0, *mc["cutoffs"], V]
    n_cl, de, div = len(ends) - 1, mc["d_embed"], mc["div_val"]
    dims = [de] if div == 1 else [de // div**i for i in range(n_cl)]
    rows = [V] if div == 1 else [ends[i + 1] - ends[i] for i in range(n_cl)]
    s = OrderedDict()
    for t, (n, d) in enumerate(zip(rows, dims, strict=True)):
        s[f"word_emb.emb_layers.{t}.weight"] = rnd(n, d)
    projs = [rnd(D, d) for d in dims] if (div > 1 or de != D) else []
    for t, p in enumerate(projs):
        s[f"word_emb.emb_projs.{t}"] = p
    for k in range(L):
        a, f = f"layers.{k}.dec_attn.", f"layers.{k}.pos_ff."
        s[a + "qkv_net.weight"], s[a + "o_net.weight"] = rnd(3 * H * DH, D), rnd(D, H * DH)
        s[a + "layer_norm.weight"], s[a + "layer_norm.bias"] = rnd(D, base=1.0), rnd(D)
        s[a + "r_net.weight"] = rnd(H * DH, D)
        s[f + "CoreNet.0.weight"], s[f + "CoreNet.0.bias"] = rnd(DI, D), rnd(DI)
        s[f + "CoreNet.3.weight"], s[f + "CoreNet.3.bias"] = rnd(D, DI), rnd(D)
        s[f + "layer_norm.weight"], s[f + "layer_norm.bias"] = rnd(D, base=1.0), rnd(D)
    if n_cl > 1:
        s["crit.cluster_weight"], s["crit.cluster_bias"] = rnd(n_cl - 1, de), rnd(n_cl - 1)
    for t, (n, d) in enumerate(zip(rows, dims, strict=True)):
        if not mc["tie_weight"]:
            s[f"crit.out_layers_weights.{t}"] = rnd(n, d)
        s[f"crit.out_layers_biases.{t}"] = rnd(n)
    for t, p in enumerate(projs):  # their softmax holds the embedding's list as a sub-module
        s[f"crit.shared_out_projs.{t}"] = p
    for i in range(n_cl):
        if projs and not mc["tie_projs"][i]:
            s[f"crit.out_projs.{i}"] = rnd(D, dims[0 if div == 1 else i])
    s["pos_emb.inv_freq"] = 1 / (10000 ** (torch.arange(0.0, D, 2.0) / D))
    s["r_w_bias"], s["r_r_bias"] = rnd(H, DH), rnd(H, DH)
    return s


# ------------------------------------------------------------------ the reference, [T, B] inputs
def _embed(s, mc, ids):
    ends, div = [0, *mc["cutoffs"], V], mc["div_val"]
    if div == 1:
        e = s["word_emb.emb_layers.0.weight"][ids]
        if "word_emb.emb_projs.0" in s:
            e = e @ s["word_emb.emb_projs.0"].t()
    else:
        e = torch.zeros(*ids.shape, D)
        for i in range(len(ends) - 1):
            inside = (ids >= ends[i]) & (ids < ends[i + 1])
            rows = s[f"word_emb.emb_layers.{i}.weight"][ids[inside] - ends[i]]
            e[inside] = rows @ s[f"word_emb.emb_projs.{i}"].t()
    return e * D**0.5


def _ln(s, key, x):
    return F.layer_norm(x, (D,), s[key + ".weight"], s[key + ".bias"])


def _layer(s, mc, k, w, pos, mem, mask):
    a, f = f"layers.{k}.dec_attn.", f"layers.{k}.pos_ff."
    qlen, bsz = w.shape[:2]
    cat = w if mem is None else torch.cat([mem, w], 0)
    heads = (_ln(s, a + "layer_norm", cat) if mc["pre_lnorm"] else cat) @ s[
        a + "qkv_net.weight"
    ].t()
    q, key, v = (x.reshape(x.shape[0], bsz, H, DH) for x in heads.chunk(3, -1))
    q, klen = q[-qlen:], key.shape[0]
    r = (pos @ s[a + "r_net.weight"].t()).view(-1, H, DH)
    ac = torch.einsum("ibnd,jbnd->bnij", q + s["r_w_bias"], key)
    bd = torch.einsum("ibnd,jnd->bnij", q + s["r_r_bias"], r)  # [B, H, T, K] by distance
    padded = torch.cat([bd.new_zeros(bsz, H, qlen, 1), bd], 3).view(bsz, H, klen + 1, qlen)
    bd = padded[:, :, 1:].reshape(bsz, H, qlen, klen)  # their relative shift
    score = ((ac + bd) / math.sqrt(DH)).masked_fill(mask[None, None], float("-inf"))
    vec = torch.einsum("bnij,jbnd->ibnd", score.softmax(3), v).reshape(qlen, bsz, H * DH)
    out = vec @ s[a + "o_net.weight"].t()
    x = w + out if mc["pre_lnorm"] else _ln(s, a + "layer_norm", w + out)
    inner = _ln(s, f + "layer_norm", x) if mc["pre_lnorm"] else x
    ff = F.relu(inner @ s[f + "CoreNet.0.weight"].t() + s[f + "CoreNet.0.bias"])
    ff = ff @ s[f + "CoreNet.3.weight"].t() + s[f + "CoreNet.3.bias"]
    return x + ff if mc["pre_lnorm"] else _ln(s, f + "layer_norm", x + ff)


def _mask(qlen, mlen, mc):
    klen, ones = mlen + qlen, torch.ones(qlen, mlen + qlen)
    causal = torch.triu(ones, 1 + mlen)
    if not mc["same_length"]:
        return causal.bool()
    mask_len = klen - mc["mem_len"] - 1
    shift = qlen - mask_len if mask_len > 0 else qlen
    return (causal + torch.tril(ones, -shift)).bool()


def _out_proj(s, mc, i):
    if mc["tie_projs"][i]:
        shared = [k for k in s if k.startswith("crit.shared_out_projs.")]
        return None if not shared else s[f"crit.shared_out_projs.{0 if len(shared) == 1 else i}"]
    return s.get(f"crit.out_projs.{i}")


def _log_probs(s, mc, hidden):  # [N, D] -> [N, V]
    ends, div, n_cl = [0, *mc["cutoffs"], V], mc["div_val"], len(mc["cutoffs"]) + 1
    ws, bs = [], []
    for i in range(n_cl):
        t = 0 if div == 1 else i
        w = (
            s[f"word_emb.emb_layers.{t}.weight"]
            if mc["tie_weight"]
            else s[f"crit.out_layers_weights.{t}"]
        )
        b = s[f"crit.out_layers_biases.{t}"]
        if div == 1:
            w, b = w[ends[i] : ends[i + 1]], b[ends[i] : ends[i + 1]]
        ws.append(w)
        bs.append(b)

    def logit(i, w, b):
        p = _out_proj(s, mc, i)
        return (hidden if p is None else hidden @ p) @ w.t() + b

    if n_cl == 1:
        return logit(0, ws[0], bs[0]).log_softmax(-1)
    head = logit(0, torch.cat([ws[0], s["crit.cluster_weight"]]),
                 torch.cat([bs[0], s["crit.cluster_bias"]])).log_softmax(-1)  # fmt: skip
    parts = [head[:, : ends[1]]]
    for i in range(1, n_cl):  # tail cluster i: head column -i
        parts.append(head[:, -i, None] + logit(i, ws[i], bs[i]).log_softmax(-1))
    return torch.cat(parts, 1)


def their_log_probs(s, mc, ids):
    """``[B, S*T, V]`` over ``ids`` ``[B, S*T]`` in segments of T, memory from empty."""
    mems, out = None, []
    with torch.no_grad():
        for st in range(0, ids.shape[1], T):
            x = ids[:, st : st + T].t()
            qlen, mlen = x.shape[0], 0 if mems is None else mems[0].shape[0]
            pos = torch.arange(mlen + qlen - 1, -1, -1.0).clamp(max=CLAMP)
            pos = torch.outer(pos, s["pos_emb.inv_freq"])
            pos = torch.cat([pos.sin(), pos.cos()], -1)
            mask, h, hids = _mask(qlen, mlen, mc), _embed(s, mc, x), []
            for k in range(L):
                hids.append(h)
                h = _layer(s, mc, k, h, pos, None if mems is None else mems[k], mask)
            cat = (
                hids
                if mems is None
                else [torch.cat([m, x], 0) for m, x in zip(mems, hids, strict=True)]
            )
            mems = [c[-MEM:] for c in cat]
            out.append(_log_probs(s, mc, h.reshape(-1, D)).view(qlen, -1, V).transpose(0, 1))
    return torch.cat(out, 1)


# ------------------------------------------------------------------ the checkpoint file
SYMBOLS = ["<eos>", "the", ",", "<unk>"] + [f"w{i}" for i in range(V - 4)]


@pytest.fixture
def vocab_class(monkeypatch):
    """``utils.vocabulary.Vocab`` as their code names it, so torch.save pickles it as theirs."""
    utils, vocabulary = types.ModuleType("utils"), types.ModuleType("utils.vocabulary")
    cls = type("Vocab", (), {"__module__": "utils.vocabulary"})
    vocabulary.Vocab, utils.vocabulary = cls, vocabulary
    monkeypatch.setitem(sys.modules, "utils", utils)
    monkeypatch.setitem(sys.modules, "utils.vocabulary", vocabulary)
    return cls


def their_vocab(cls):
    v = cls()
    v.__dict__.update(
        counter=Counter({w: 3 for w in SYMBOLS}), special=["<eos>"], min_freq=0, max_size=None,
        lower_case=False, delimiter=None, vocab_file=None, idx2sym=list(SYMBOLS),
        sym2idx=OrderedDict((w, i) for i, w in enumerate(SYMBOLS)),
    )  # fmt: skip
    return v


def save_checkpoint(path, name, vocab_cls, *, amp=None, seed=0):
    """``torch.save`` of the dict their ``save_checkpoint`` writes."""
    mc = model_config(name)
    state = their_state(mc, seed)
    if amp == "apex":  # opt level O2: the model itself in float16
        state = OrderedDict((k, v.half()) for k, v in state.items())
    amp_state = {
        None: None,
        "apex": OrderedDict(loss_scaler0={"loss_scale": 65536.0, "unskipped": 17}),
        "pytorch": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                    "growth_interval": 2000, "_growth_tracker": 17},
    }[amp]  # fmt: skip
    args = argparse.Namespace(
        dataset="wt103", vocab="word", fp16=amp is not None, amp=amp or "apex", n_token=V,
        tied=mc["tie_weight"], work_dir="LM-TFM/wt103", optim="jitlamb", lr=0.01,
    )  # fmt: skip
    torch.save({
        "args": args, "model_config": mc, "model_state": state,
        "optimizer_state": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                            "param_groups": [{"lr": 0.01, "params": [0]}]},
        "scheduler_state": {"T_max": 100, "eta_min": 0.001, "base_lrs": [0.01],
                            "last_epoch": 3, "_step_count": 4, "_last_lr": [0.0099]},
        "rng_states": [torch.get_rng_state()], "memory": [torch.zeros(L, MEM, B, D)],
        "vocab": their_vocab(vocab_cls), "amp_state": amp_state, "epoch": 1, "batch": 7,
        "last_iter": 7, "train_step": 3, "best_val_loss": 5.25,
    }, path)  # fmt: skip
    return mc, state


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_parity_with_their_model(tmp_path, vocab_class, name):
    path = tmp_path / "checkpoint_last.pt"
    mc, state = save_checkpoint(path, name, vocab_class)
    ck = read_nvidia(path)
    ours, counts = load_nvidia(ck)
    ours.eval()
    cfg, s = ours.config, ours.config.segment
    assert (s.mem_len, s.clamp_len, s.same_length, s.tgt_len) == (
        MEM, CLAMP, mc["same_length"], T)  # fmt: skip
    assert s.window_keys == "mem_len+1" and not cfg.untie_r
    assert counts["converted"] == len(ours.state_dict())
    shared = sum(k.startswith("crit.shared_out_projs.") for k in state)
    assert counts["skipped"] == 1 + shared  # pos_emb.inv_freq and the repeated projections
    ids = torch.randint(0, V, (B, SEGMENTS * T), generator=torch.Generator().manual_seed(5))
    want = their_log_probs({k: v.float() for k, v in state.items()}, mc, ids)
    got = segment_log_probs(ours, ids, tgt_len=T)
    assert (got - want).abs().max().item() <= 1e-5
    # the key map itself, independently of the scores
    ours_state = ours.state_dict()
    assert torch.equal(
        ours_state["layers.1.attn.qkv.weight"], state["layers.1.dec_attn.qkv_net.weight"]
    )
    assert torch.equal(ours_state["crit.out_bias.0"], state["crit.out_layers_biases.0"])
    if mc["cutoffs"]:
        assert torch.equal(ours_state["crit.cluster_weight"], state["crit.cluster_weight"].flip(0))


@pytest.mark.parametrize("amp", ["apex", "pytorch"])
def test_amp_checkpoints(tmp_path, vocab_class, amp, capsys):
    path = tmp_path / "checkpoint_best.pt"
    mc, state = save_checkpoint(path, "wt103", vocab_class, amp=amp)
    out = tmp_path / "converted"
    assert main(["convert", "--from", "nvidia", str(tmp_path), str(out)]) == 0  # the folder
    printed = capsys.readouterr().out
    assert ("float16 tensors (apex AMP weights)" in printed) == (amp == "apex")
    ours = load_pretrained(out).eval()
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    ids = torch.randint(0, V, (B, SEGMENTS * T), generator=torch.Generator().manual_seed(6))
    ref = {k: v.float() for k, v in state.items()}
    # the sinusoid's frequencies are a buffer that apex stored in float16: ours are recomputed
    # in float32, so the reference takes the exact ones (the weights are the file's)
    exact = 1 / (10000 ** (torch.arange(0.0, D, 2.0) / D))
    assert torch.equal(state["pos_emb.inv_freq"], exact.to(state["pos_emb.inv_freq"].dtype))
    ref["pos_emb.inv_freq"] = exact
    want = their_log_probs(ref, mc, ids)
    assert (segment_log_probs(ours, ids, tgt_len=T) - want).abs().max().item() <= 1e-5
    vocab = Vocab.load(out / "vocab.json")
    assert (
        list(vocab.tokens) == SYMBOLS and vocab.eos_token == "<eos>" and vocab.unk_token == "<unk>"
    )


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_foreign_and_bad_files_exit_2(tmp_path, vocab_class, capsys):
    def convert(path):
        code = main(["convert", "--from", "nvidia", str(path), str(tmp_path / "out")])
        assert not (tmp_path / "out").exists()
        return code, capsys.readouterr().err

    marker = tmp_path / "pwned"
    torch.save({"model_state": {}, "model_config": {}, "x": Payload(marker)}, tmp_path / "p.pt")
    code, err = convert(tmp_path / "p.pt")
    assert code == 2 and "refusing" in err and "posix.system" in err and not marker.exists()
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "other.pt")  # some other project
    code, err = convert(tmp_path / "other.pt")
    assert code == 2 and "not an NVIDIA DeepLearningExamples checkpoint" in err
    mem_transformer = types.ModuleType("mem_transformer")  # the authors' whole-model pickle
    mem_transformer.MemTransformerLM = type(
        "MemTransformerLM", (), {"__module__": "mem_transformer"}
    )
    sys.modules["mem_transformer"] = mem_transformer
    try:
        torch.save(mem_transformer.MemTransformerLM(), tmp_path / "model.pt")
    finally:
        del sys.modules["mem_transformer"]
    code, err = convert(tmp_path / "model.pt")
    assert code == 2 and "mem_transformer.MemTransformerLM" in err
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    code, err = convert(tmp_path / "scripted.pt")
    assert code == 2 and "a TorchScript program holding a RecursiveScriptModule" not in err
    assert code == 2 and "TorchScript program holding a Linear, not their model" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, err = convert(tmp_path / "junk.pt")
    assert code == 2 and "junk.pt" in err
    code, err = convert(tmp_path / "empty_dir_that_is_missing")
    assert code == 2 and "not found" in err
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint(path, "wt103", vocab_class)
    ck = torch.load(path, weights_only=False)
    ck["model_config"]["n_layer"] = 3  # a config that does not fit the weights
    torch.save(ck, path)
    code, err = convert(path)
    assert code == 2 and "layers.2" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_their_torchscript_program(tmp_path, name, capsys):
    mc, state = model_config(name), their_state(model_config(name), seed=3)
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(MemTransformerLM(state, mc)), path)
    out = tmp_path / "converted"
    assert main(["convert", "--from", "nvidia", str(path), str(out), "--no-vocab"]) == 0
    assert "dropout rates are not recorded" in capsys.readouterr().out
    ours = load_pretrained(out).eval()
    assert (ours.config.segment.mem_len, ours.config.segment.same_length) == (
        MEM, mc["same_length"])  # fmt: skip
    ids = torch.randint(0, V, (B, SEGMENTS * T), generator=torch.Generator().manual_seed(7))
    want = their_log_probs(state, mc, ids)
    assert (segment_log_probs(ours, ids, tgt_len=T) - want).abs().max().item() <= 1e-5
    if name == "wt103":  # a tied projection that is not the embedding's is refused
        jit = MemTransformerLM(state, mc)
        jit.crit.out_projs[2] = torch.zeros_like(jit.word_emb.emb_projs[2])
        torch.jit.save(torch.jit.script(jit), tmp_path / "bad.pt")
        code = main(["convert", "--from", "nvidia", str(tmp_path / "bad.pt"), str(tmp_path / "b")])
        assert code == 2 and "crit.out_projs[2] is tied" in capsys.readouterr().err


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, vocab_class, capsys):
    """A diverged run's checkpoint (NaN weights) would convert into a model that predicts NaN."""
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint(path, sorted(LAYOUTS)[0], vocab_class)
    ck = torch.load(path, weights_only=False)
    key = next(k for k in ck["model_state"] if k.startswith("word_emb"))
    ck["model_state"][key][0, 0] = float("inf")
    torch.save(ck, path)
    code = main(["convert", "--from", "nvidia", str(path), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "NaN or infinite" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
