"""Per-op profiles (torch.profiler) of the benchmark's training and evaluation steps.

    PYTHONPATH=src python benchmarks/op_profile.py --preset tiny256,wt103_small --out /tmp/prof.md

For every (preset, mode, dtype) it runs ``--warmup`` steps, then profiles ``--steps`` steps of
``txl bench``'s runner (the same step that is timed) and writes the op table sorted by self CPU
time, with each op's share of the total and its self memory. Shares are what to read on a shared
machine; absolute times depend on the load. The findings are summarised in benchmarks/profile.md.
"""

from __future__ import annotations

import argparse
import os

import torch
from torch.profiler import ProfilerActivity, profile

from transformer_xl.bench import Case, Runner, Variant


def profile_case(preset: str, mode: str, dtype: str, variant: str, steps: int, warmup: int):
    runner = Runner(Case(preset, mode, Variant.parse(variant), dtype), same_weights=False)
    for _ in range(warmup):
        runner.step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(steps):
            runner.step()
    return prof.key_averages()


def op_table(events, rows: int) -> str:
    total = sum(e.self_cpu_time_total for e in events) or 1
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    lines = [
        "| op | calls | self CPU share | self CPU ms | self memory MiB |",
        "|---|---|---|---|---|",
    ]
    for e in top:
        lines.append(
            f"| `{e.key}` | {e.count} | {100 * e.self_cpu_time_total / total:.1f}% | "
            f"{e.self_cpu_time_total / 1e3:.1f} | {e.self_cpu_memory_usage / 2**20:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny256,wt103_small")
    ap.add_argument("--modes", default="train,eval")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--variant", default="sdpa")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rows", type=int, default=14)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = [f"torch {torch.__version__}, {args.threads} threads, load {os.getloadavg()}"]
    for preset in args.preset.split(","):
        for mode in args.modes.split(","):
            for dtype in args.dtypes.split(","):
                ev = profile_case(preset, mode, dtype, args.variant, args.steps, args.warmup)
                parts.append(
                    f"### {preset} {mode} {dtype} ({args.variant})\n\n" + op_table(ev, args.rows)
                )
                print(parts[-1], flush=True)
    with open(args.out, "w") as f:
        f.write("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
