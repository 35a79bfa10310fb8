"""Resident memory segment after segment in evaluation, the way a user wraps a plain call:
``torch.no_grad()`` + ``torch.autocast`` around each ``model(...)`` (``autocast``), the same in
float32 (``fp32``), or the weights cast once (``cast``, ``devices.cast_for_inference``).

    PYTHONPATH=src python benchmarks/eval_memory_growth.py --segments 100 --modes fp32,autocast,cast

Each mode runs in a fresh process and prints the resident size and its high-water mark (MB,
``/proc/self/status``) after every segment, then the first and last. Issue 23 saw the peak
climb from 330 to 950 MB over 100 ``wt103_small`` segments with per-call autocast and uniform
ids on an AMX machine. To run it against older code, put that tree's ``src`` first on
``PYTHONPATH`` (``cast`` needs ``devices.cast_for_inference``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch


def _status_mb() -> tuple[int, int]:
    with open("/proc/self/status") as f:
        kib = {ln.split(":")[0]: int(ln.split()[1]) for ln in f if ln.startswith("Vm")}
    return kib["VmRSS"] // 1024, kib["VmHWM"] // 1024


def run(mode: str, args) -> list[tuple[int, int]]:
    from transformer_xl.bench.presets import bench_preset
    from transformer_xl.bench.runner import zipf_tokens
    from transformer_xl.model import TransformerXLLM

    bp = bench_preset(args.preset)
    cfg = bp.config.replace(n_layer=args.layers) if args.layers else bp.config
    torch.manual_seed(0)
    model = TransformerXLLM(cfg).eval()
    if mode == "cast":
        from transformer_xl.devices import cast_for_inference

        cast_for_inference(model, "bf16")
    tlen, mlen, batch = bp.eval_tgt_len, bp.eval_mem_len, args.batch or bp.batch
    g, n = torch.Generator().manual_seed(1), batch * (tlen * args.segments + 1)
    ids = torch.randint(0, cfg.vocab_size, (n,), generator=g) if args.uniform else None
    data = (zipf_tokens(cfg.vocab_size, n, g) if ids is None else ids).view(batch, -1)
    mems, seen = None, []
    memory = cfg.segment.replace(mem_len=mlen)
    for s in range(args.segments):
        x, y = data[:, s * tlen : (s + 1) * tlen], data[:, s * tlen + 1 : (s + 1) * tlen + 1]
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=mode == "autocast"):
            mems = model(x, labels=y, mems=mems, settings=memory).mems
        seen.append(_status_mb())
    return seen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="wt103_small")
    p.add_argument("--modes", default="fp32,autocast,cast")
    p.add_argument("--segments", type=int, default=100)
    p.add_argument("--batch", type=int, default=0, help="default: the preset's")
    p.add_argument("--layers", type=int, default=0, help="default: the preset's")
    p.add_argument("--zipf", dest="uniform", action="store_false", help="word-like ids")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        seen = run(args.child, args)
        trace = " ".join(f"{r}/{h}" for r, h in seen)
        print(f"{args.child}: first {seen[0][0]}/{seen[0][1]} MB, last {seen[-1][0]}/"
              f"{seen[-1][1]} MB (resident/peak); each segment: {trace}")  # fmt: skip
        return 0
    for mode in args.modes.split(","):
        if mode not in ("fp32", "autocast", "cast"):
            raise SystemExit(f"--modes {mode!r}: expected fp32, autocast or cast")
        rest = list(argv if argv is not None else sys.argv[1:])
        subprocess.run([sys.executable, __file__, *rest, "--child", mode], env=os.environ,
                       check=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
