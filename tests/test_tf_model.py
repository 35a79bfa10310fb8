"""The TensorFlow model equals the PyTorch model: same parameter names and shapes, same per-token
log-probabilities over several segments with memory (both ways through a saved folder), same
gradients; plus XLA, mixed precision and the weight-folder errors."""

# isort: off
import transformer_xl.tf  # noqa: F401  (first: it must load before TensorFlow)

# isort: on
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
from safetensors.numpy import load_file, save_file

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.segment import SegmentSettings
from transformer_xl.tf import TFTransformerXLLM, parameter_shapes

TOL = 1e-5  # the bar: max abs difference of per-token log-probabilities, float32

VARIANTS = {
    "plain": dict(),
    "adaptive_div2": dict(cutoffs=(10, 30), div_val=2, tie_projs=(False, True, False)),
    "adaptive_div1_proj": dict(cutoffs=(10, 30), d_embed=12, tie_projs=(False, True, True)),
    "untied_no_same_dim": dict(
        cutoffs=(20,), div_val=2, d_embed=32, tie_weight=False, proj_same_dim=False, untie_r=True
    ),
    "pre_lnorm": dict(pre_lnorm=True, untie_r=True),
    "shaw_attn1": dict(attn_type=1),
    "vanilla_attn2": dict(attn_type=2),
    "alrfou_attn3": dict(attn_type=3),
}
RUNS = {  # run settings: (segment length, changes to the model's SegmentSettings)
    "mem": (4, dict(mem_len=6)),
    "same_length_tf": (4, dict(mem_len=5, same_length=True, clamp_len=3)),
    "same_length_torch": (3, dict(mem_len=5, same_length=True, window_keys="mem_len")),
    "ext_len": (4, dict(mem_len=6, ext_len=2)),
}


def config(**kw) -> TransformerXLConfig:
    base = dict(
        vocab_size=60, n_layer=2, n_head=2, d_model=16, d_head=8, d_inner=24, dropout=0.0,
        segment=SegmentSettings(mem_len=6, tgt_len=4),
    )  # fmt: skip
    base.update(kw)
    return TransformerXLConfig(**base)


def torch_model(cfg: TransformerXLConfig) -> TransformerXLLM:
    torch.manual_seed(1)
    model = TransformerXLLM(cfg).eval()
    with torch.no_grad():  # larger weights so that every term matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def run_torch(model, x, y, T, **run):
    mems, lps, nlls = None, [], []
    settings = model.config.segment.replace(**run)
    with torch.no_grad():
        for s in range(0, x.shape[1], T):
            out = model(
                torch.from_numpy(x[:, s : s + T]), labels=torch.from_numpy(y[:, s : s + T]),
                mems=mems, settings=settings, return_log_probs=True,
            )  # fmt: skip
            mems = out.mems
            lps.append(out.log_probs.numpy())
            nlls.append(out.token_nll.numpy())
    return np.concatenate(lps, 1), np.concatenate(nlls, 1), [m.numpy() for m in mems]


def run_tf(model, x, y, T, **run):
    mems, lps, nlls = None, [], []
    settings = model.config.segment.replace(**run)
    for s in range(0, x.shape[1], T):
        out = model(x[:, s : s + T], y[:, s : s + T], mems, settings, return_log_probs=True)
        mems = out.mems
        lps.append(out.log_probs.numpy())
        nlls.append(out.token_nll.numpy())
    return np.concatenate(lps, 1), np.concatenate(nlls, 1), [m.numpy() for m in mems]


def data(vocab=60, batch=3, length=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, (batch, length)), rng.integers(0, vocab, (batch, length))


def assert_same(a, b):
    for u, v in zip(a, b, strict=True):
        if isinstance(u, list):
            assert len(u) == len(v)
            for p, q in zip(u, v, strict=True):
                np.testing.assert_allclose(p, q, rtol=0, atol=TOL)
        else:
            assert np.abs(u - v).max() <= TOL, np.abs(u - v).max()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_parameter_names_and_shapes_equal_pytorch(variant):
    cfg = config(**VARIANTS[variant])
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in TransformerXLLM(cfg).state_dict().items()}
    assert parameter_shapes(cfg) == expected


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_torch_folder_runs_in_tf_with_equal_log_probs(variant, tmp_path):
    cfg = config(**VARIANTS[variant])
    tm = torch_model(cfg)
    tm.save_pretrained(tmp_path)
    fm = TFTransformerXLLM.from_pretrained(tmp_path)
    x, y = data()
    assert_same(run_tf(fm, x, y, 4), run_torch(tm, x, y, 4))


@pytest.mark.parametrize("run", sorted(RUNS))
def test_run_settings_equal_pytorch(run, tmp_path):
    cfg = config(**VARIANTS["adaptive_div2"])
    tm = torch_model(cfg)
    tm.save_pretrained(tmp_path)
    fm = TFTransformerXLLM.from_pretrained(tmp_path)
    T, kw = RUNS[run]
    x, y = data(length=15)
    assert_same(run_tf(fm, x, y, T, **kw), run_torch(tm, x, y, T, **kw))


@pytest.mark.parametrize("variant", ["adaptive_div2", "untied_no_same_dim", "shaw_attn1"])
def test_tf_folder_runs_in_torch_with_equal_log_probs(variant, tmp_path):
    fm = TFTransformerXLLM(config(**VARIANTS[variant]), seed=3)
    fm.save_pretrained(tmp_path)
    tm = TransformerXLLM.from_pretrained(tmp_path).eval()
    x, y = data(seed=4)
    assert_same(run_torch(tm, x, y, 4), run_tf(fm, x, y, 4))
    # the init is the authors' too: layer-norm gains near 1, biases zero, weights small
    p = {k: v.numpy() for k, v in fm.params.items()}
    assert abs(p["layers.0.attn.ln.weight"].mean() - 1) < 0.05
    assert not p["layers.0.ff.fc1.bias"].any()
    assert 0.01 < p["layers.0.ff.fc1.weight"].std() < 0.03


def test_gradients_equal_pytorch(tmp_path):
    cfg = config(**VARIANTS["adaptive_div2"])
    tm = torch_model(cfg).train()  # dropout is 0: training mode changes nothing else
    tm.save_pretrained(tmp_path)
    fm = TFTransformerXLLM.from_pretrained(tmp_path)
    x, y = data(length=8)
    first = tm(torch.from_numpy(x[:, :4]), labels=torch.from_numpy(y[:, :4]))
    out = tm(torch.from_numpy(x[:, 4:]), labels=torch.from_numpy(y[:, 4:]), mems=first.mems)
    out.loss.backward()
    mems = fm(x[:, :4], y[:, :4]).mems
    with tf.GradientTape() as tape:
        loss = fm(x[:, 4:], y[:, 4:], mems, training=True).loss
    names = sorted(fm.params)
    grads = tape.gradient(loss, [fm.params[n] for n in names])
    torch_grads = dict(tm.named_parameters())
    assert abs(loss.numpy() - out.loss.item()) < TOL
    for n, g in zip(names, grads, strict=True):
        np.testing.assert_allclose(g.numpy(), torch_grads[n].grad.numpy(), atol=1e-6, err_msg=n)


def test_xla_compiled_forward_equals_eager():
    fm = TFTransformerXLLM(config(**VARIANTS["adaptive_div2"]), seed=5)
    x, y = data()
    mems = fm(x[:, :4], y[:, :4]).mems

    @tf.function(jit_compile=True, autograph=False)
    def step(x, y, mems):
        out = fm(x, y, mems, dense_softmax=True)
        return out.token_nll, out.mems

    nll, new = step(tf.constant(x[:, 4:8]), tf.constant(y[:, 4:8]), mems)
    ref = fm(x[:, 4:8], y[:, 4:8], mems)
    np.testing.assert_allclose(nll.numpy(), ref.token_nll.numpy(), atol=TOL)
    for a, b in zip(new, ref.mems, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=TOL)


def test_bfloat16_compute_is_close_to_float32():
    fm = TFTransformerXLLM(config(**VARIANTS["adaptive_div2"]), seed=6)
    x, y = data()
    full = fm(x[:, :4], y[:, :4])
    half = fm(x[:, :4], y[:, :4], compute_dtype=tf.bfloat16)
    assert half.token_nll.dtype == tf.float32 and half.hidden.dtype == tf.bfloat16
    assert half.mems[0].dtype == tf.bfloat16
    diff = np.abs(half.token_nll.numpy() - full.token_nll.numpy()).max()
    assert 0 < diff < 0.1  # rounded, yet the same model


def test_dropout_only_in_training():
    fm = TFTransformerXLLM(config(dropout=0.3), seed=7)
    x, y = data()
    a, b = fm(x, y).token_nll.numpy(), fm(x, y).token_nll.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(fm(x, y, training=True).token_nll.numpy(), a)


def test_bad_inputs_are_reported():
    fm = TFTransformerXLLM(config(), seed=0)
    x, y = data()
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        fm(x[0])
    with pytest.raises(ValueError, match="labels shape"):
        fm(x, y[:, :5])
    with pytest.raises(ValueError, match="one per layer"):
        fm(x, y, (tf.zeros([3, 2, 16]),))


def test_load_errors_name_the_file_and_tensor(tmp_path):
    cfg = config()
    TFTransformerXLLM(cfg).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["vocab_size"] == 60
    wfile = tmp_path / "model.safetensors"
    good = load_file(str(wfile))
    bad = dict(good)
    bad["r_w_bias"] = np.zeros((3, 8), np.float32)
    save_file(bad, str(wfile))
    with pytest.raises(ValueError, match=r"model.safetensors.*'r_w_bias'.*\(3, 8\)"):
        TFTransformerXLLM.from_pretrained(tmp_path)
    del bad["r_w_bias"]
    save_file(bad, str(wfile))
    with pytest.raises(ValueError, match=r"missing \['r_w_bias'\]"):
        TFTransformerXLLM.from_pretrained(tmp_path)
    wfile.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="expected a readable safetensors file"):
        TFTransformerXLLM.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="nowhere: no such file or folder"):
        TFTransformerXLLM.from_pretrained(tmp_path / "nowhere")


def test_save_writes_atomically_and_copies_the_tokenizer(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "vocab.json").write_text('{"format_version": 1}')
    fm = TFTransformerXLLM(config(), seed=2)
    fm.save_pretrained(tmp_path / "m", tokenizer_dir=tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json", "model.safetensors", "vocab.json",
    ]  # fmt: skip
    again = TFTransformerXLLM.from_pretrained(tmp_path / "m")
    for k, v in fm.params.items():
        np.testing.assert_array_equal(v.numpy(), again.params[k].numpy())


def test_the_docs_model_example_runs(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[1] / "docs" / "tensorflow.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__doc_example__"}
    exec(compile(example, "docs/tensorflow.md:example", "exec"), scope)
    assert scope["out"].log_probs.shape == (2, 16, 1000)
    assert sorted(p.name for p in (tmp_path / "my-model").iterdir()) == [
        "config.json", "model.safetensors",
    ]  # fmt: skip
