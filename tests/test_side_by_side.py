"""benchmarks/side_by_side.py's table from a recorded result (the run itself is the lead's)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "side_by_side.py"


def _module():
    spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(variant, mode, secs, kib, loss=5.0):
    return dict(
        variant=variant, mode=mode, seconds_per_step=secs, tokens_per_s=100 / secs[0],
        speedup_vs_hf=None, memory={"step_peak_kib": kib}, last_loss=loss,
    )  # fmt: skip


def test_table_reports_ratios_to_hf_and_memory_ratios():
    sbs = _module()
    rows = [
        _row("sdpa", "train", [1.0, 1.0, 1.0], 600),
        _row("sdpa+bf16", "train", [0.5, 0.5, 0.5], 500),
        _row("hf", "train", [2.0, 2.0, 2.0], 1000),
    ]
    rows[0]["speedup_vs_hf"], rows[1]["speedup_vs_hf"], rows[2]["speedup_vs_hf"] = 2.0, 4.0, 1.0
    env = dict(
        cpu="X", cpus=2, bf16_units={"amx_bf16": True, "avx512_bf16": False},
        torch="t", transformers="4.37.2", commit="abc", load_average=[0.1, 0.1, 0.1],
        threads=2, rounds=3, steps=1, warmup=0, load_average_end=[0.2, 0.2, 0.2],
    )  # fmt: skip
    result = {
        "started": "s", "finished": "f",
        "runs": [{"label": "tiny", "rows": rows, "env": env, "hf_bf16_error": {"train": "boom"}}],
    }  # fmt: skip
    md = sbs.results_md(result, ["--rounds", "3"])
    line = next(x for x in md.splitlines() if x.startswith("| tiny | train"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2:8] == ["2.00x", "4.00x", "fails in HF", "0.60", "-", "0.83"]
    assert "bf16 units: amx_bf16" in md and "--rounds 3" in md and "boom" in md
