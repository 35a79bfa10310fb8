"""``benchmarks/gpu_check.sh`` in its CPU mode: every fast path checked against the float64
reference, a benchmark table written, the exit code telling whether all checks passed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_runs_on_cpu_in_quick_mode(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--device", "cpu", "--quick"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checks = json.loads((out / "correctness.json").read_text())["checks"]
    paths = {(c["check"], c["path"]) for c in checks}
    for path in ("eager", "sdpa", "flex", "triton", "relative:flex", "relative:triton"):
        assert ("kernel", path) in paths
    for path in ("eager", "sdpa", "flex", "triton"):
        assert ("model", path) in paths
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert all(c["out_err"] < 1e-5 for c in checks if c["check"] == "kernel")
    assert "| tiny | eval | eager |" in (out / "table.md").read_text()
    assert (out / "log.txt").read_text().count("correctness: 14/14 passed") == 1
