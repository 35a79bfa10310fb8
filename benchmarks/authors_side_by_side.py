"""Issue 13's side-by-side benchmark against the authors' own PyTorch code (a clone of
kimiyoung/transformer-xl, imported as released: ``bench/authors.py``), float32 and bfloat16
autocast, training and evaluation at the issue's configurations; writes
benchmarks/RESULTS_authors.md and benchmarks/results/authors_side_by_side.json.

    git clone https://github.com/kimiyoung/transformer-xl /tmp/authors
    PYTHONPATH=src python benchmarks/authors_side_by_side.py --authors /tmp/authors   # idle!

Per (config, mode) ours (``sdpa``, ``sdpa+bf16``) and theirs (float32, and bf16 where their
code runs under autocast) alternate with ``txl bench``'s timing (order flipped every round,
ratios = medians of per-round ratios); every runner is warmed up until its memory is full. Step
memory: peak resident growth over the baseline in a fresh process per row (3 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from transformer_xl.bench import Case, Runner, Variant
from transformer_xl.bench.authors import AuthorsRunner, measure_authors_memory
from transformer_xl.bench.machine import describe, machine_info
from transformer_xl.bench.memory import measure_memory
from transformer_xl.bench.presets import bench_preset
from transformer_xl.bench.timing import time_side_by_side
from transformer_xl.fileio import atomic_write_text

CASES = [
    ("tiny256", ["train", "eval"], "tiny (4L d256, V 256, T=M=128, B 16)"),
    ("wt103_small", ["train", "eval"], "wt103-small (4L d256, V 50k, div_val 4, T=M=64, B 8)"),
    ("wt103_small_m640", ["eval"], "wt103-small, eval T 64 M 640"),
]


def _authors_bf16_error(case: Case, clone: str) -> str | None:
    try:
        r = AuthorsRunner(case, clone, bf16=True)
        r.step()
    except RuntimeError as e:
        return str(e).splitlines()[0]
    return None


def run_case(preset: str, mode: str, args) -> dict:
    case = Case(preset, mode, Variant("sdpa"), batch=args.batch)
    bf16_error = _authors_bf16_error(Case(preset, mode, Variant("sdpa"), batch=1), args.authors)
    runners = {
        "ours fp32": Runner(case),
        "ours bf16": Runner(Case(preset, mode, Variant("sdpa", bf16=True), batch=args.batch)),
        "authors fp32": AuthorsRunner(case, args.authors),
    }
    if bf16_error is None:
        runners["authors bf16"] = AuthorsRunner(case, args.authors, bf16=True)
    if args.compile and mode == "train":  # where it pays (docs/performance.md)
        runners["ours fp32+compile"] = Runner(
            Case(preset, mode, Variant("sdpa", compile=True), batch=args.batch)
        )
        runners["ours bf16+compile"] = Runner(
            Case(preset, mode, Variant("sdpa", compile=True, bf16=True), batch=args.batch)
        )
    warmup = max(args.warmup, runners["authors fp32"].fill_steps + 1)
    timings = time_side_by_side(runners, rounds=args.rounds, steps=args.steps, warmup=warmup)
    memory = {
        "ours fp32": measure_memory(case),
        "ours bf16": measure_memory(
            Case(preset, mode, Variant("sdpa", bf16=True), batch=args.batch)
        ),
        "authors fp32": measure_authors_memory(case, args.authors),
    }
    if bf16_error is None:
        memory["authors bf16"] = measure_authors_memory(case, args.authors, bf16=True)
    return {
        "preset": preset, "mode": mode, "authors_bf16_error": bf16_error,
        "seconds_per_step": {k: t.seconds_per_step for k, t in timings.items()},
        "tokens_per_s": {k: t.tokens_per_s for k, t in timings.items()},
        "step_peak_kib": {k: m.get("step_peak_kib") for k, m in memory.items()},
        "loss": {k: float(r.last_loss) for k, r in runners.items()},
    }  # fmt: skip


def _ratio(row: dict, fast: str, slow: str) -> str:
    a, b = row["seconds_per_step"].get(fast), row["seconds_per_step"].get(slow)
    if not a or not b:
        return "-"
    return f"{statistics.median(s / f for f, s in zip(a, b, strict=True)):.2f}x"


def _mem_ratio(row: dict, a: str, b: str) -> str:
    x, y = row["step_peak_kib"].get(a), row["step_peak_kib"].get(b)
    return "-" if x is None or not y else f"{x / y:.2f}"


def table(rows: list[dict], labels: dict) -> list[str]:
    out = [
        "| config | mode | ours fp32 vs authors fp32 | ours bf16 vs authors fp32 | ours bf16 vs "
        "authors bf16 | mem ours fp32 / authors fp32 | mem ours bf16 / authors fp32 | tokens/s "
        "ours fp32 / bf16 | tokens/s authors fp32 / bf16 | step MiB ours fp32 / bf16 | step MiB "
        "authors fp32 / bf16 | ours fp32+compile vs authors fp32 | ours bf16+compile vs "
        "authors fp32 |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        tps, mem = r["tokens_per_s"], r["step_peak_kib"]

        def mib(k, mem=mem):
            return "-" if mem.get(k) is None else f"{mem[k] / 1024:,.0f}"

        ab = "fails" if r["authors_bf16_error"] else f"{tps['authors bf16']:,.0f}"
        out.append(
            f"| {labels[r['preset']]} | {r['mode']} | {_ratio(r, 'ours fp32', 'authors fp32')} | "
            f"{_ratio(r, 'ours bf16', 'authors fp32')} | "
            f"{_ratio(r, 'ours bf16', 'authors bf16') if not r['authors_bf16_error'] else 'fails'}"
            f" | {_mem_ratio(r, 'ours fp32', 'authors fp32')} | "
            f"{_mem_ratio(r, 'ours bf16', 'authors fp32')} | {tps['ours fp32']:,.0f} / "
            f"{tps['ours bf16']:,.0f} | {tps['authors fp32']:,.0f} / {ab} | {mib('ours fp32')} / "
            f"{mib('ours bf16')} | {mib('authors fp32')} / {mib('authors bf16')} | "
            f"{_ratio(r, 'ours fp32+compile', 'authors fp32')} | "
            f"{_ratio(r, 'ours bf16+compile', 'authors fp32')} |"
        )
    return out


def _label(preset: str) -> str:
    """The table's name of a preset: the issue's wording for the default cases, else the
    preset's own note."""
    for p, _, label in CASES:
        if p == preset:
            return label
    note = bench_preset(preset).note
    return f"{preset} ({note})" if note else preset


def parse_cases(spec: str | None) -> list[tuple[str, str]]:
    """``--cases`` (``preset:mode,...``, any bench preset, modes train/eval) -> (preset, mode)
    pairs in order; None: the default cases. Raises ValueError naming the bad entry."""
    if spec is None:
        return [(p, m) for p, modes, _ in CASES for m in modes]
    out = []
    for item in spec.split(","):
        preset, sep, mode = item.strip().partition(":")
        if not sep or mode not in ("train", "eval"):
            raise ValueError(f"--cases entry {item!r}: expected PRESET:train or PRESET:eval")
        bench_preset(preset)  # an unknown preset names the known ones
        out.append((preset, mode))
    return out


def results_md(result: dict, argv: list[str]) -> str:
    labels = {r["preset"]: _label(r["preset"]) for r in result["rows"]}
    env = result["env"]
    notes = [
        f"* {labels[r['preset']]} {r['mode']}: the authors' code fails under bf16 autocast "
        f"(`{r['authors_bf16_error']}`)."
        for r in result["rows"]
        if r["authors_bf16_error"]
    ]
    head = [
        "# Benchmark results against the authors' code",
        "",
        "Written by `benchmarks/authors_side_by_side.py` (raw per-round figures: "
        "[`results/authors_side_by_side.json`](results/authors_side_by_side.json)). Only what "
        "was run and seen; run alone on the machine.",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/authors_side_by_side.py {' '.join(argv)}`",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {describe(env)} |",
        f"| bf16 units | {json.dumps(env['bf16_units'])} |",
        f"| threads, rounds x steps | {result['threads']}, {result['rounds']} x "
        f"{result['steps']} |",
        f"| load average at start / end | {result['load_start']} / {result['load_end']} |",
        f"| run | {result['started']} to {result['finished']} |",
        "",
        "Peer: the authors' `MemTransformerLM` from kimiyoung/transformer-xl "
        f"(commit {result['authors_commit']}), imported as released (their `.byte()` masks "
        "read as bool, `bench/authors.py`), random weights by their init law; their training "
        "step (Adam, clip 0.25). Ours: `txl bench`'s runner (`sdpa`, fused Adam); evaluation as "
        "`evaluate()` reads (cached keys when mem_len >= tgt_len). bf16 = "
        '`torch.autocast("cpu", torch.bfloat16)` around the model call. Ratios > 1: we are '
        "faster; memory ratios < 1: we use less.",
        "",
    ]
    return "\n".join(head + table(result["rows"], labels) + ([""] + notes if notes else [])) + "\n"


def _authors_commit(clone: str) -> str:
    head = Path(clone) / ".git"
    if not head.exists():
        return "unknown (not a git clone)"
    res = subprocess.run(
        ["git", "-C", clone, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return res.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authors", required=True, help="a clone of kimiyoung/transformer-xl")
    ap.add_argument("--authors-commit", default=None, help="its commit, if not a git clone")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument(
        "--compile", action="store_true", help="add ours fp32 + torch.compile (training rows)"
    )
    ap.add_argument(
        "--cases", default=None,
        help="comma-separated PRESET:MODE, any txl bench preset, train or eval "
        "(default: tiny256 and wt103_small train and eval, wt103_small_m640 eval)",
    )  # fmt: skip
    ap.add_argument("--out", default="benchmarks")
    args = ap.parse_args(argv)
    try:
        cases = parse_cases(args.cases)
    except ValueError as e:
        ap.error(str(e))  # exit 2, one line
    torch.set_num_threads(args.threads)
    result = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_start": list(os.getloadavg()), "env": machine_info(), "threads": args.threads,
        "rounds": args.rounds, "steps": args.steps,
        "authors_commit": args.authors_commit or _authors_commit(args.authors), "rows": [],
    }  # fmt: skip
    for preset, mode in cases:
        print(f"{preset} {mode} ...", file=sys.stderr, flush=True)
        result["rows"].append(run_case(preset, mode, args))
    result["load_end"] = list(os.getloadavg())
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out = Path(args.out)
    atomic_write_text(
        out / "results" / "authors_side_by_side.json", json.dumps(result, indent=1) + "\n"
    )
    atomic_write_text(out / "RESULTS_authors.md", results_md(result, argv))
    print(results_md(result, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
