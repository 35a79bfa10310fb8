"""The side-by-side benchmark of issue 13: ours against HF's port (transformers 4.37.2, the
runnable stand-in for the authors' code), float32 and bfloat16 autocast, training and evaluation,
at the issue's configurations, in one run; writes benchmarks/RESULTS.md and the raw JSON.

    PYTHONPATH=src python benchmarks/side_by_side.py            # the full run (machine idle!)
    PYTHONPATH=src python benchmarks/side_by_side.py --quick --out /tmp/sbs   # a smoke test

Per (config, mode) the variants ``sdpa``, ``sdpa+bf16``, ``hf`` and ``hf+bf16`` alternate
(``txl bench``'s timing: the order flips every round, ratios are medians of per-round ratios),
and each row's step memory is measured in a fresh process from the OS (peak resident growth over
the process baseline). Figures are only meaningful from a machine with no other work on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from transformer_xl.bench import PEER, Case, Runner, Variant, run_benchmark
from transformer_xl.bench.machine import describe
from transformer_xl.fileio import atomic_write_text

# (bench preset, modes, what the issue calls it)
CASES = [
    ("tiny256", ["train", "eval"], "tiny (4L d256, V 256, T=M=128, B 16)"),
    ("wt103_small", ["train", "eval"], "wt103-small (4L d256, V 50k, div_val 4, T=M=64, B 8)"),
    ("wt103_small_m640", ["eval"], "wt103-small, eval T 64 M 640"),
]
VARIANTS = ["sdpa", "sdpa+bf16", PEER, PEER + "+bf16"]


def runs_under_bf16(preset: str, mode: str) -> str | None:
    """None if HF's port runs one step under bf16 autocast here, else its error (4.37.2's
    single-cluster softmax writes bf16 values into a float32 buffer and fails)."""
    try:
        Runner(Case(preset, mode, Variant.parse(PEER + "+bf16"), batch=1)).step()
    except RuntimeError as e:
        return str(e).splitlines()[0]
    return None


def run(args) -> dict:
    extra = ["sdpa+compile"] if args.compile else []
    out = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "runs": []}
    for preset, modes, label in CASES:
        failed = {m: runs_under_bf16(preset, m) for m in modes}
        names = [v for v in VARIANTS + extra if not (v == PEER + "+bf16" and any(failed.values()))]
        variants = [Variant.parse(v) for v in names]
        res = run_benchmark(
            [preset], modes, variants, threads=args.threads, rounds=args.rounds,
            steps=args.steps, warmup=args.warmup, memory=True, batch=args.batch,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )  # fmt: skip
        out["runs"].append({"preset": preset, "label": label, "hf_bf16_error": failed, **res})
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return out


def _rows(run: dict, mode: str) -> dict[str, dict]:
    return {r["variant"]: r for r in run["rows"] if r["mode"] == mode}


def _mem(r: dict) -> float | None:
    m = r.get("memory", {})
    return m.get("step_peak_kib", m.get("cuda_peak_bytes"))


def _ratio(a, b) -> str:
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}"


def table(result: dict) -> list[str]:
    """One line per (config, mode): speed ratios to HF's float32 (and bf16 to HF's bf16), step
    memory ratios, tokens/s and losses."""
    lines = [
        "| config | mode | fp32 vs hf fp32 | bf16 vs hf fp32 | bf16 vs hf bf16 | mem fp32 vs hf fp32 "
        "| mem bf16 vs hf bf16 | mem bf16 vs our fp32 | tokens/s ours fp32 / bf16 | tokens/s hf "
        "fp32 / bf16 | step MiB ours fp32 / bf16 | step MiB hf fp32 / bf16 | loss ours fp32 / bf16 "
        "/ hf fp32 |",
        "|" + "---|" * 13,
    ]
    for run in result["runs"]:
        for mode in dict.fromkeys(r["mode"] for r in run["rows"]):
            v = _rows(run, mode)
            us, ub, hs = v["sdpa"], v["sdpa+bf16"], v[PEER]
            hb = v.get(PEER + "+bf16", {"seconds_per_step": [], "tokens_per_s": float("nan")})
            per_round = [
                h / b for h, b in zip(hb["seconds_per_step"], ub["seconds_per_step"], strict=False)
            ]
            vs_hb = f"{statistics.median(per_round):.2f}x" if per_round else "fails in HF"
            mib = lambda r: "-" if _mem(r) is None else f"{_mem(r) / 1024:,.0f}"  # noqa: E731
            lines.append(
                f"| {run['label']} | {mode} | {us['speedup_vs_hf']:.2f}x | "
                f"{ub['speedup_vs_hf']:.2f}x | {vs_hb} | {_ratio(_mem(us), _mem(hs))} | "
                f"{_ratio(_mem(ub), _mem(hb))} | {_ratio(_mem(ub), _mem(us))} | "
                f"{us['tokens_per_s']:,.0f} / {ub['tokens_per_s']:,.0f} | "
                f"{hs['tokens_per_s']:,.0f} / {hb['tokens_per_s']:,.0f} | {mib(us)} / {mib(ub)} | "
                f"{mib(hs)} / {mib(hb)} | {us['last_loss']:.4f} / {ub['last_loss']:.4f} / "
                f"{hs['last_loss']:.4f} |"
            )
    return lines


def results_md(result: dict, argv: list[str]) -> str:
    env = result["runs"][0]["env"]
    end = result["runs"][-1]["env"]
    head = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/side_by_side.py` (how it measures: "
        "[`docs/performance.md`](../docs/performance.md); raw figures with every per-round time: "
        "[`results/side_by_side.json`](results/side_by_side.json)). Only what was run and seen.",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/side_by_side.py {' '.join(argv)}`",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {describe(env)} |",
        f"| bf16 units | {json.dumps(env['bf16_units'])} |",
        f"| threads, rounds x steps (warmup) | {env['threads']}, {env['rounds']} x "
        f"{env['steps']} ({env['warmup']}) |",
        f"| load average at start / end | {env['load_average']} / {end['load_average_end']} |",
        f"| run | {result['started']} to {result['finished']} |",
        "",
        "Peer: HF's `TransfoXLLMHeadModel` (transformers 4.37.2), built first, ours loaded from its "
        'weights (same function); bf16 = `torch.autocast("cpu", torch.bfloat16)` around the '
        "model call for both. Ratios > 1: we are faster; memory ratios < 1: we use less. Step "
        "memory = peak resident growth over the process baseline during 3 steps in a fresh "
        "process (activations, gradients, optimizer state, allocator caches).",
        "",
        "Evaluation rows: ours reads as `evaluate()` does (cached keys and values, the cache "
        "filled from the data first), HF from its `mem_len` zero vectors: the same work, other "
        "memory contents, so the eval losses differ (conformance is tested in "
        "`tests/test_hf_conformance.py`, not here).",
        "",
    ]
    notes = [
        f"* {run['label']} {mode}: HF's port fails under bf16 autocast (`{err}`), so it has no "
        "bf16 row there."
        for run in result["runs"]
        for mode, err in run["hf_bf16_error"].items()
        if err
    ]
    return "\n".join(head + table(result) + ([""] + notes if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="override every preset's batch")
    ap.add_argument("--compile", action="store_true", help="add sdpa+compile rows (slow start)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 round, 1 step, batch 2")
    ap.add_argument("--out", default="benchmarks", help="folder for RESULTS.md and results/")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch = 1, 1, 0, args.batch or 2
    result = run(args)
    out = Path(args.out)
    atomic_write_text(out / "results" / "side_by_side.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "RESULTS.md", results_md(result, argv))
    print(results_md(result, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
