"""bfloat16 autocast around a plain ``model(...)`` call: fp32 master weights, float32 loss, and
training that follows float32's within 1% after a fixed number of steps (correct on any CPU;
fast only where the CPU has bf16 units)."""

from __future__ import annotations

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.presets import preset_config
from transformer_xl.segment import SegmentSettings


def _train(cfg: TransformerXLConfig, bf16: bool, steps: int = 12) -> list[float]:
    torch.manual_seed(0)
    model = TransformerXLLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    motif = torch.randint(0, cfg.vocab_size, (4, 24), generator=g)  # repeats: learnable
    data = motif.repeat(1, steps)[:, : steps * 16 + 1]
    mems, losses = None, []
    for s in range(steps):
        x, y = data[:, s * 16 : s * 16 + 16], data[:, s * 16 + 1 : s * 16 + 17]
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = model(x, labels=y, mems=mems)
        assert out.loss.dtype == torch.float32
        out.loss.backward()
        assert all(p.dtype == torch.float32 for p in model.parameters())
        opt.step()
        opt.zero_grad(set_to_none=True)
        mems = out.mems
        losses.append(out.loss.item())
    return losses


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(vocab_size=2000, cutoffs=(200, 1000), div_val=4, tie_projs=(False, True, True))],
    ids=["tiny", "adaptive"],
)
def test_bf16_training_loss_within_one_percent_of_fp32(kw):
    cfg = preset_config(
        "tiny", n_layer=2, d_model=64, d_head=16, d_inner=128, dropout=0.0,
        segment=SegmentSettings(tgt_len=64, mem_len=16), **kw,
    )  # fmt: skip
    fp32, bf16 = _train(cfg, False), _train(cfg, True)
    assert fp32[-1] < fp32[0] - 0.3  # it learns
    assert abs(bf16[-1] - fp32[-1]) <= 0.01 * fp32[-1], (fp32, bf16)


def test_evaluate_under_bf16_autocast_matches_fp32():
    """The evaluator's bf16 path (what ``txl eval --precision bf16`` sets up) at an adaptive config."""
    from transformer_xl.evaluate import evaluate

    cfg = preset_config(
        "tiny", n_layer=2, d_model=64, d_head=16, d_inner=128, dropout=0.0, vocab_size=2000,
        cutoffs=(200, 1000), div_val=4, tie_projs=(False, True, True),
    )  # fmt: skip
    torch.manual_seed(0)
    model = TransformerXLLM(cfg)
    g = torch.Generator().manual_seed(3)
    data = torch.randint(0, 2000, (3, 4 * 16 + 1), generator=g)
    batches = [(data[:, s : s + 16], data[:, s + 1 : s + 17]) for s in range(0, 64, 16)]
    fp32 = evaluate(model, batches, settings=model.config.segment.replace(mem_len=32))
    bf16 = evaluate(
        model,
        batches,
        settings=model.config.segment.replace(mem_len=32),
        autocast=torch.autocast("cpu", torch.bfloat16),
    )
    assert fp32.tokens == bf16.tokens == 3 * 64
    assert abs(bf16.loss - fp32.loss) <= 0.01 * fp32.loss
    assert bf16.loss != fp32.loss  # bf16 really ran
