"""What a figure needs next to it: CPU model, bf16 units, torch and transformers versions,
commit, load average."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flag set) from ``/proc/cpuinfo``; ("", empty) where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), set()
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def bf16_units() -> dict:
    """Whether this CPU has bfloat16 matrix units: AMX (``amx_bf16``, Intel Sapphire Rapids and
    later) or AVX-512 BF16 dot products (``avx512_bf16``), from ``/proc/cpuinfo``, and what torch
    itself says (oneDNN's bf16 support and the vector ISA it dispatches to)."""
    _, flags = _cpuinfo()
    try:
        mkldnn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn = None
    amx, avx = "amx_bf16" in flags, "avx512_bf16" in flags
    return {
        "amx_bf16": amx, "avx512_bf16": avx, "present": amx or avx,
        "torch_mkldnn_bf16": mkldnn, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }  # fmt: skip


def git_commit() -> str | None:
    """The commit of this package's checkout (with ``+dirty`` if it has changes), if it is one."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def machine_info() -> dict:
    """The figures' context, recorded in every benchmark result."""
    name, _ = _cpuinfo()
    try:
        import transformers

        hf_version = transformers.__version__
    except ImportError:
        hf_version = None
    return {
        "cpu": name, "cpus": os.cpu_count(), "bf16_units": bf16_units(),
        "torch": torch.__version__, "transformers": hf_version,
        "python": platform.python_version(), "commit": git_commit(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }  # fmt: skip


def describe(info: dict) -> str:
    """One line for the benchmark's log."""
    units = info["bf16_units"]
    have = [k for k in ("amx_bf16", "avx512_bf16") if units[k]]
    bf16 = ", ".join(have) if have else "none (bf16 matmuls are emulated: slower than float32)"
    load = info["load_average"]
    return (
        f"CPU: {info['cpu'] or 'unknown'} ({info['cpus']} logical); bf16 units: {bf16}; "
        f"torch {info['torch']}, transformers {info['transformers']}; "
        f"commit {info['commit']}; load average {load[0]:.2f}"
        if load
        else ""
    )


def matmul_rate(dtype: torch.dtype, *, rows=(512, 1024, 2048, 4096), width: int = 1024) -> float:
    """This machine's best ``torch.mm`` rate in FLOP/s for ``dtype`` on the current thread count:
    ``[rows, width] @ [width, width]`` at each row count, with the right factor stored as is and
    transposed (``F.linear``'s layout; some CPUs' bf16 kernels are fast in one layout only), a
    warm-up call then the best of 3 timed calls; the best of all. The ceiling a benchmark row's
    achieved FLOP/s is reported against (a share of it, per dtype)."""
    best = 0.0
    for n in rows:
        a = torch.randn(n, width).to(dtype)
        w = torch.randn(width, width).to(dtype)
        for b in (w, w.t()):
            torch.mm(a, b)
            for _ in range(3):
                t0 = time.perf_counter()
                torch.mm(a, b)
                best = max(best, 2.0 * n * width * width / (time.perf_counter() - t0))
    return best


def matmul_rates() -> dict[str, float]:
    """:func:`matmul_rate` in float32 and bfloat16 (GFLOP/s), for a results file's header."""
    return {
        name: round(matmul_rate(dtype) / 1e9, 1)
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
