"""Step memory from the operating system: each measurement in a fresh process, the growth of the
resident set's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) over the
resident size just before the steps; on CUDA the allocator's peak.

``python -m transformer_xl.bench.memory --memory-child JSON`` is the child process."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from transformer_xl.bench.runner import Case, Runner, Variant


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set size (VmHWM)
        return True
    except OSError:
        return False


def rss_peak_growth(step: Callable[[], None], steps: int, finish=lambda: None) -> dict:
    """The resident size now and its high-water mark over ``steps`` calls of ``step`` (then
    ``finish``, e.g. a device sync): ``rss_before_kib``, ``peak_rss_kib``, ``peak_reset``."""
    gc.collect()
    reset = _reset_peak_rss()
    before = _status_kib("VmRSS")
    for _ in range(steps):
        step()
    finish()
    return {"rss_before_kib": before, "peak_rss_kib": _status_kib("VmHWM"), "peak_reset": reset}


def measure_memory_here(case: Case, steps: int, threads: int) -> dict:
    """Peak memory of ``steps`` steps of ``case`` in this process (meant for a fresh one): the
    high-water mark of resident memory from just after the model is built (first step, with its
    optimizer state, included)."""
    import transformers  # noqa: F401  (same imports whatever the variant, for equal baselines)

    torch.set_num_threads(threads)
    runner = Runner(case, same_weights=False)
    gc.collect()
    runner.sync()
    if case.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    res = rss_peak_growth(runner.step, steps, finish=runner.sync)
    if case.device.startswith("cuda"):
        res["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return res


def run_memory_child(module: str, request: dict, *, what: str, timeout: float = 600) -> dict:
    """``python -m module --memory-child JSON(request)`` in a fresh process with this package's
    copy on the path; its last stdout line is the JSON result, to which ``step_peak_kib`` (peak
    minus the resident size before the steps) is added."""
    src = str(Path(__file__).resolve().parents[2])  # this package's copy, installed or not
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", module, "--memory-child", json.dumps(request)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {what} failed:\n{proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res.get("peak_rss_kib") is not None and res.get("rss_before_kib") is not None:
        res["step_peak_kib"] = res["peak_rss_kib"] - res["rss_before_kib"]
    return res


def measure_memory(case: Case, *, steps: int = 3, threads: int = 2, timeout: float = 600) -> dict:
    """Run :func:`measure_memory_here` in a fresh Python process; returns its JSON result, with
    ``peak_rss_kib`` the high-water mark of resident memory during the steps (OS accounting) and
    ``step_peak_kib`` that minus the resident memory just before them."""
    request = {"case": _case_to_dict(case), "steps": steps, "threads": threads}
    return run_memory_child(
        "transformer_xl.bench.memory", request, what=case.variant.label, timeout=timeout
    )


def cuda_step_memory(runner: Runner) -> dict:
    """On CUDA, in this process: the allocator's peak during one step above what was allocated
    before it (``cuda_peak_bytes``; weights, optimizer state and other runners excluded)."""
    runner.sync()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    runner.step()
    runner.sync()
    return {"cuda_peak_bytes": torch.cuda.max_memory_allocated() - before}


def _case_to_dict(case: Case) -> dict:
    d = asdict(case)
    d["variant"] = case.variant.label
    return d


def _case_from_dict(d: dict) -> Case:
    return Case(**{**d, "variant": Variant.parse(d["variant"])})


def _memory_child(payload: str) -> None:
    req = json.loads(payload)
    print(
        json.dumps(measure_memory_here(_case_from_dict(req["case"]), req["steps"], req["threads"]))
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2])
    else:
        sys.exit("usage: txl bench (this module's __main__ only serves memory subprocesses)")
