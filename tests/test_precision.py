"""Inference with the weights cast once (``precision.cast_for_inference``): bf16 end to end, no
casts of weights or large activations during a pass, scores close to float32's."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from transformer_xl import TransformerXLLM, preset_config
from transformer_xl.cli import main
from transformer_xl.devices import cast_for_inference
from transformer_xl.evaluate import evaluate

CFG = dict(
    n_layer=2, d_model=64, d_head=16, d_inner=128, dropout=0.0, vocab_size=2000,
    cutoffs=(200, 1000), div_val=4, tie_projs=(False, True, True),
)  # fmt: skip


def _model() -> TransformerXLLM:
    torch.manual_seed(0)
    return TransformerXLLM(preset_config("tiny", **CFG))


def _batches():
    data = torch.randint(0, 2000, (3, 4 * 16 + 1), generator=torch.Generator().manual_seed(3))
    return [(data[:, s : s + 16], data[:, s + 1 : s + 17]) for s in range(0, 64, 16)]


def test_cast_for_inference_casts_every_weight_and_fp32_changes_nothing():
    model = _model().train()
    before = {k: v.data_ptr() for k, v in model.state_dict().items()}
    assert cast_for_inference(model, "fp32") is model and not model.training
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == before
    assert cast_for_inference(model, "bfloat16") is model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="expected one of"):
        cast_for_inference(model, "int8")


@pytest.mark.parametrize("mem_len", [32, 8], ids=["cached_keys", "segment_forward"])
def test_bf16_evaluation_is_close_to_fp32(mem_len):
    model = _model()
    memory = model.config.segment.replace(mem_len=mem_len)
    fp32 = evaluate(model, _batches(), memory)
    bf16 = evaluate(cast_for_inference(model, "bf16"), _batches(), memory)
    assert fp32.tokens == bf16.tokens == 3 * 64
    assert abs(bf16.loss - fp32.loss) <= 0.01 * fp32.loss
    assert bf16.loss != fp32.loss  # bf16 really ran


class _Conversions(TorchDispatchMode):
    """Every dtype conversion between float32 and a half type: the shapes converted."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src, dst = args[-1] if func is torch.ops.aten.copy_.default else args[0], out
            pair = {src.dtype, dst.dtype}
            if torch.float32 in pair and pair & {torch.bfloat16, torch.float16}:
                self.shapes.append(tuple(src.shape))
        return out


@pytest.mark.parametrize("mem_len", [32, 8], ids=["cached_keys", "segment_forward"])
def test_bf16_evaluation_casts_no_weight_and_no_large_activation(mem_len):
    """With the weights cast once no weight changes dtype during a pass, and no activation as
    large as the feed-forward's ``[B, T, d_inner]`` (autocast around the same pass casts
    weights: the check would see it). What is left: the sinusoid table (computed in float32)
    and the loss's ``[n, d_i]`` target rows, taken to float32."""
    model = _model()
    weights = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    ff_activation = 3 * 16 * 128

    def weight_casts(shapes):
        return [s for s in shapes if s in weights]

    with _Conversions() as autocast_run, torch.autocast("cpu", torch.bfloat16):
        evaluate(model, _batches(), settings=model.config.segment.replace(mem_len=mem_len))
    assert weight_casts(autocast_run.shapes)  # the check can fail
    cast_for_inference(model, "bf16")
    with _Conversions() as cast_run:
        evaluate(model, _batches(), settings=model.config.segment.replace(mem_len=mem_len))
    assert not weight_casts(cast_run.shapes)
    sizes = [math.prod(s) for s in cast_run.shapes]
    assert max(sizes, default=0) < ff_activation, sorted(cast_run.shapes)[-5:]


def test_txl_generate_precision_bf16(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "m")
    out = {}
    for precision in ("fp32", "bf16"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["generate", str(tmp_path / "m"), "--prompt-ids", "1 2 3", "--ids",
                         "--max-new-tokens", "4", "--temperature", "0", "--device", "cpu",
                         "--precision", precision])  # fmt: skip
        assert code == 0
        out[precision] = buf.getvalue().split()
    assert len(out["bf16"]) == len(out["fp32"]) == 4
    assert all(0 <= int(t) < 2000 for t in out["bf16"])
