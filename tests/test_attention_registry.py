"""The attention-kernel registry: every entry equal to ``eager`` on every path it serves, the
kernel each path runs for each ``attn_impl`` (traced by counting calls, not read from a table),
and the clear errors.

Paths: a segment forward with gradients (training: loss and every parameter's gradient), the
same without gradients, and reading with cached keys (``StreamingLM``) several tokens and one
token at a time. Cases: causal, same_length with clamp_len, Shaw et al.'s table (attn_type 1:
the fused kernels take the position scores), no position term (attn_type 2). The second
segment's 64 keys (65 distances) make the fast kernels pad their position scores."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.model import attention as attention_mod
from transformer_xl.model import incremental
from transformer_xl.model.incremental import StreamingLM
from transformer_xl.model.kernels import flex as flex_mod
from transformer_xl.model.kernels import registry
from transformer_xl.model.kernels.score_attend import _ScoreAttend
from transformer_xl.segment import FIELDS as SEGMENT_FIELDS
from transformer_xl.segment import SegmentSettings

IMPLS = ["sdpa", "score_attend", "chunked", "flex", "triton", "auto"]
CASES = {
    "causal": dict(attn_type=0),
    "same_length_clamp": dict(attn_type=0, same_length=True, clamp_len=5),
    "shaw": dict(attn_type=1),
    "absolute": dict(attn_type=2),
}
FIRST, SECOND = 60, 8  # segment lengths: memory 0 then 56, so K + 1 = 65 on the second


@pytest.fixture(autouse=True)
def _flex_uncompiled(monkeypatch):
    monkeypatch.setattr(flex_mod, "COMPILE", False)  # compiling takes a minute on CPU


def _config(**kw) -> TransformerXLConfig:
    """A small config; segment fields among ``kw`` go into its ``SegmentSettings``."""
    seg = {k: kw.pop(k) for k in SEGMENT_FIELDS if k in kw}
    base = dict(
        vocab_size=50, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=64, dropout=0.0,
        segment=SegmentSettings(**{"tgt_len": SECOND, "mem_len": 56, **seg}),
    )  # fmt: skip
    return TransformerXLConfig(**{**base, **kw})


def _pair(case: str, impl: str):
    torch.manual_seed(0)
    ref = TransformerXLLM(_config(**CASES[case]), attn_impl="eager")
    fast = TransformerXLLM(ref.config, attn_impl=impl)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _tokens() -> torch.Tensor:
    return torch.randint(0, 50, (2, FIRST + SECOND + 1), generator=torch.Generator().manual_seed(1))


def _two_segments(model, x):
    """Loss of a segment without memory, then one with 56 positions of memory."""
    out = model(x[:, :FIRST], labels=x[:, 1 : FIRST + 1])
    out2 = model(x[:, FIRST:-1], labels=x[:, FIRST + 1 :], mems=out.mems)
    return out.loss + out2.loss


# ---------------------------------------------------------------- equality with eager, per path
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_segment_training_equals_eager(impl, case):
    ref, fast = _pair(case, impl)
    x = _tokens()
    if impl == "flex":  # PyTorch's FlexAttention has no backward pass on CPU: refused
        with pytest.raises(ValueError, match="no backward pass on cpu"):
            _two_segments(fast, x)
        return
    want, got = _two_segments(ref, x), _two_segments(fast, x)
    want.backward()
    got.backward()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for (n, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=2e-5, rtol=1e-4, msg=n)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_segment_forward_without_gradients_equals_eager(impl, case):
    ref, fast = _pair(case, impl)
    x = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(_two_segments(fast, x), _two_segments(ref, x))


@pytest.mark.parametrize("chunk", [1, 9])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
def test_cached_key_steps_equal_eager(impl, case, chunk):
    """One token at a time over 10 tokens, or 9 at a time over 68 (keys up to 65)."""
    ref, fast = _pair(case, impl)
    x = _tokens()
    n = 10 if chunk == 1 else FIRST + SECOND
    ids, labels = x[:, :n], x[:, 1 : n + 1]
    want = StreamingLM(ref, 2).score(ids, labels, chunk_len=chunk)
    got = StreamingLM(fast, 2).score(ids, labels, chunk_len=chunk)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_cached_key_step_equals_the_segment_forward(impl):
    """The same kernel on both paths gives the model's own numbers (not only eager's)."""
    _, model = _pair("same_length_clamp", impl)
    x = _tokens()
    with torch.no_grad():
        out = model(x[:, :FIRST], labels=x[:, 1 : FIRST + 1])
        out2 = model(x[:, FIRST:-1], labels=x[:, FIRST + 1 :], mems=out.mems)
    stream = StreamingLM(model, 2)
    got = stream.score(x[:, :-1], x[:, 1:], chunk_len=FIRST)
    want = -torch.cat([out.token_nll, out2.token_nll], dim=1)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


# ---------------------------------------------------------------- which kernel runs where
def _counting(fn, label: str, calls: list):
    def counted(*args, **kwargs):
        calls.append(label)
        return fn(*args, **kwargs)

    return counted


@pytest.fixture
def traced(monkeypatch):
    """Every registry entry's functions, SDPA itself and the score_attend autograd function,
    each appending its name to the returned list when called."""
    calls: list[str] = []
    for name, k in list(registry.KERNELS.items()):
        relative = k.relative and _counting(k.relative, f"{name}.relative", calls)
        attend = _counting(k.attend, f"{name}.attend", calls)
        monkeypatch.setitem(
            registry.KERNELS, name, dataclasses.replace(k, attend=attend, relative=relative)
        )
    sdpa = _counting(F.scaled_dot_product_attention, "F.sdpa", calls)
    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    monkeypatch.setattr(
        _ScoreAttend, "forward", staticmethod(_counting(_ScoreAttend.forward, "ScoreAttend", calls))
    )
    return calls


def _run_path(model, path: str, x) -> None:
    if path == "forward_grad":
        model(x[:, :SECOND], labels=x[:, 1 : SECOND + 1]).loss.backward()
    elif path == "forward":
        with torch.no_grad():
            model(x[:, :SECOND], labels=x[:, 1 : SECOND + 1])
    else:
        StreamingLM(model, 2).hidden(x[:, : 1 if path == "step1" else SECOND])


SDPA, SCORE = {"sdpa.attend", "F.sdpa"}, {"score_attend.attend", "ScoreAttend"}
RUNS = {  # attn_type 0: (segment forward with gradients, without, cached steps of 8, of 1)
    "eager": [{"eager.attend"}] * 4,
    "sdpa": [SDPA] * 4,
    "score_attend": [SCORE] * 4,
    "chunked": [{"chunked.relative"}] * 2 + [{"chunked.attend"}] * 2,
    "flex": [ValueError, {"flex.relative"}, {"flex.attend"}, {"flex.attend"}],
    "triton": [{"triton.relative"}] * 2 + [{"triton.attend"}] * 2,
    "auto": [SCORE, SDPA, SCORE, SDPA],  # on CPU
}


@pytest.mark.parametrize("impl", list(RUNS))
def test_each_path_runs_the_named_kernel(impl, traced):
    x = _tokens()
    torch.manual_seed(0)
    model = TransformerXLLM(_config(), attn_impl=impl)  # built after the tracing patches
    for path, want in zip(registry.PATHS, RUNS[impl], strict=True):
        traced.clear()
        if want is ValueError:
            with pytest.raises(ValueError):
                _run_path(model, path, x)
            continue
        _run_path(model, path, x)
        assert set(traced) == want, (impl, path, traced)
        assert len(traced) == len(want) * model.config.n_layer, (impl, path, traced)


@pytest.mark.parametrize("impl", ["chunked", "flex", "triton"])
def test_fused_kernels_take_the_position_scores_for_shaws_table(impl, traced):
    """attn_type 1 adds a per-distance scalar: the fused kernels run their ``attend`` form."""
    model = TransformerXLLM(_config(attn_type=1), attn_impl=impl)
    traced.clear()
    _run_path(model, "forward", _tokens())
    assert set(traced) == {f"{impl}.attend"}


def test_auto_without_a_position_term_is_sdpa_everywhere(traced):
    model = TransformerXLLM(_config(attn_type=2))
    assert model.attention.describe() == "auto on cpu -> sdpa"
    for path in registry.PATHS:
        traced.clear()
        _run_path(model, path, _tokens())
        assert set(traced) == SDPA, path


def test_eager_computes_no_padding_columns(monkeypatch):
    """score_columns (the BLAS padding) is never asked on eager's paths, with 65 distances."""

    def refuse(klen):
        raise AssertionError("eager padded its position scores")

    monkeypatch.setattr(attention_mod, "score_columns", refuse)
    monkeypatch.setattr(incremental, "score_columns", refuse)
    ref, _ = _pair("causal", "sdpa")
    x = _tokens()
    _two_segments(ref, x).backward()
    StreamingLM(ref, 2).score(x[:, :-1], x[:, 1:], chunk_len=FIRST)
    ref.set_attn_impl("sdpa")
    with pytest.raises(AssertionError, match="padded"):
        _two_segments(ref, x)


# ---------------------------------------------------------------- the choice and its errors
def test_describe_says_what_each_path_runs():
    cpu = registry.resolve_attention("auto", device_type="cpu", position_term=True)
    assert cpu.describe() == (
        "auto on cpu -> score_attend (segment forward without gradients: sdpa; "
        "cached-key step of one token: sdpa)"
    )
    cuda = registry.resolve_attention("auto", device_type="cuda", position_term=True)
    assert cuda.describe() == "auto on cuda -> sdpa"
    for name in registry.KERNELS:
        assert (
            registry.resolve_attention(name, device_type="cpu", position_term=True).describe()
            == name
        )


def test_the_model_resolves_once_and_again_when_moved():
    model = TransformerXLLM(_config())
    assert model.attn_impl == "auto" and model.attention.device_type == "cpu"
    model.set_attn_impl("chunked")
    assert model.attn_impl == "chunked" and model.attention.describe() == "chunked"
    with pytest.raises(AttributeError):
        model.attn_impl = "eager"  # changed only through set_attn_impl
    auto = TransformerXLLM(_config())
    auto.to("meta")  # another device type: auto chooses again
    assert auto.attention.device_type == "meta"
    with torch.device("meta"):
        built = TransformerXLLM(_config())
    built.to_empty(device="cpu")
    assert built.attention.device_type == "cpu"


def test_unknown_name_is_refused_at_build_time():
    with pytest.raises(
        ValueError, match="attn_impl='fast' is unknown: expected one of auto, eager"
    ):
        TransformerXLLM(_config(), attn_impl="fast")
    model = TransformerXLLM(_config(), attn_impl="eager")
    with pytest.raises(ValueError, match="unknown"):
        model.set_attn_impl("reference")
    assert model.attn_impl == "eager" and model.attention.describe() == "eager"


def test_a_missing_package_is_refused_at_build_time(monkeypatch):
    real = registry.importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util, "find_spec", lambda n: None if n == "triton" else real(n)
    )
    with pytest.raises(ValueError, match="needs triton.*pip install triton"):
        TransformerXLLM(_config(), attn_impl="triton")


@pytest.mark.parametrize("impl", ["flex", "triton"])
def test_kernels_without_attention_dropout_refuse_it_in_training(impl):
    model = TransformerXLLM(_config(dropatt=0.1), attn_impl=impl).train()
    with torch.no_grad(), pytest.raises(ValueError, match="no attention dropout"):
        _two_segments(model, _tokens())
    model.eval()  # no dropout in evaluation: served
    with torch.no_grad():
        _two_segments(model, _tokens())


def test_the_library_sets_no_environment_variable():
    code = (
        "import os, torch\n"
        "from transformer_xl import TransformerXLConfig, TransformerXLLM\n"
        "import transformer_xl.model.kernels.triton_attn\n"
        "before = dict(os.environ)\n"
        "cfg = TransformerXLConfig(vocab_size=20, n_layer=1, n_head=2, d_model=8, d_head=4,"
        " d_inner=8)\n"
        "TransformerXLLM(cfg, attn_impl='triton')\n"
        "assert 'TRITON_INTERPRET' not in os.environ, 'set at import'\n"
        "assert dict(os.environ) == before\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")  # this checkout
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
