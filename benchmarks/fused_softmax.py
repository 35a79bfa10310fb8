"""Micro-benchmark: one softmax cluster's loss, forward + backward, plain (log_softmax + gather,
storing the ``[N, V]`` logits) against ``chunked_linear_nll``. Each method runs in a fresh process;
peak memory is the OS high-water mark (VmHWM) above the resident size before the step.

    python benchmarks/fused_softmax.py [--rows 4096] [--dim 256] [--vocab 20003] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def one(method: str, rows: int, dim: int, vocab: int, threads: int) -> dict:
    from transformer_xl.bench.memory import _reset_peak_rss, _status_kib
    from transformer_xl.model.kernels.fused_softmax import chunked_linear_nll

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(rows, dim, generator=g, requires_grad=True)
    w = (0.02 * torch.randn(vocab, dim, generator=g)).requires_grad_()
    b = torch.zeros(vocab, requires_grad=True)
    y = torch.randint(0, vocab, (rows,), generator=g)
    times = []
    for rep in range(4):
        if rep == 1:
            _reset_peak_rss()
            before = _status_kib("VmRSS")
        t0 = time.perf_counter()
        if method == "plain":
            nll = -torch.log_softmax(torch.addmm(b, h, w.t()), -1).gather(1, y[:, None]).squeeze(1)
        else:
            nll = chunked_linear_nll(h, w, b, y)
        nll.mean().backward()
        times.append(time.perf_counter() - t0)
        h.grad = w.grad = b.grad = None
    return dict(
        method=method, ms=1e3 * min(times[1:]), step_peak_mib=(_status_kib("VmHWM") - before) / 1024
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--vocab", type=int, default=20003)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", default=None)
    a = p.parse_args()
    if a.child:
        print(json.dumps(one(a.child, a.rows, a.dim, a.vocab, a.threads)))
        return
    for method in ("plain", "chunked", "plain", "chunked"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            method,
            "--rows",
            str(a.rows),
            "--dim",
            str(a.dim),
        ]
        cmd += ["--vocab", str(a.vocab), "--threads", str(a.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
