"""A committed loss trace of the tiny preset over 20 deterministic CPU training steps.

Any change that alters the model's numerics (on purpose or not) breaks this test. To record a new
trace after an intended change, run ``TXL_WRITE_GOLDEN=1 pytest tests/test_golden.py`` and say why
in the commit message.

The trace was recorded with PyTorch's AVX2 CPU kernels; AVX-512 kernels (e.g. on AMD Zen 4) sum
in another order and drift by about 5e-4 over 20 steps, more than the bound. So the trace is
computed in a child process with ``ATEN_CPU_CAPABILITY=avx2`` (ignored where the CPU has no
such level), and the rest of the suite keeps testing the machine's own kernels.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from transformer_xl import TransformerXLLM
from transformer_xl.presets import preset_config

GOLDEN = Path(__file__).parent / "golden" / "tiny_trace.json"


def trace() -> list[float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(1234)
        cfg = preset_config("tiny", vocab_size=256, dropout=0.1)
        model = TransformerXLLM(cfg, attn_impl="eager")
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(5)
        data = torch.randint(0, 32, (4, 20 * 32 + 1), generator=gen)
        data[:, 1::3] = data[:, :-1:3]  # some structure to learn
        losses, mems = [], None
        for step in range(20):
            s = step * 32
            out = model(
                data[:, s : s + 32],
                settings=model.config.segment.replace(mem_len=32),
                labels=data[:, s + 1 : s + 33],
                mems=mems,
            )
            mems = out.mems
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
            losses.append(out.loss.item())
        return losses
    finally:
        torch.set_num_threads(threads)


def trace_in_child() -> list[float]:
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    env["PYTHONPATH"] = os.pathsep.join(
        [src, str(Path(__file__).parent), env.get("PYTHONPATH", "")]
    )
    code = "import json, test_golden; print(json.dumps(test_golden.trace()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_golden_loss_trace():
    losses = trace_in_child()
    if os.environ.get("TXL_WRITE_GOLDEN"):
        GOLDEN.write_text(
            json.dumps({"torch": torch.__version__, "losses": losses}, indent=1) + "\n"
        )
    golden = json.loads(GOLDEN.read_text())["losses"]
    assert len(golden) == 20
    assert losses[-1] < losses[0] - 0.1  # it learns
    diffs = [abs(a - b) for a, b in zip(losses, golden, strict=True)]
    assert max(diffs) <= 2e-4, list(zip(losses, golden, strict=False))
