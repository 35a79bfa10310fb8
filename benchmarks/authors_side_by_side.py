"""Side-by-side benchmark against the authors' own PyTorch code (a clone of
kimiyoung/transformer-xl, imported as released: ``bench/authors.py``) and x-transformers (XL
memories, rotary positions, flash SDPA: ``bench/xtransformers.py``), float32 and bfloat16
autocast, training and evaluation; writes benchmarks/RESULTS_authors.md and
benchmarks/results/authors_side_by_side.json (or ``--out``).

    git clone https://github.com/kimiyoung/transformer-xl /tmp/authors; pip install x-transformers
    PYTHONPATH=src python benchmarks/authors_side_by_side.py --authors /tmp/authors \
        --xtransformers --ids zipf,uniform   # idle!

Per (config, mode, token law) ours (``sdpa``, ``sdpa+bf16``) and the peers alternate with
``txl bench``'s timing (order flipped every round, ratios = medians of per-round ratios); every
runner is warmed up until its memory is full. Token ids are word-like (Zipf) by default;
``uniform`` is the stress row (every adaptive cluster as often as its width). Step memory: peak
resident growth over the baseline in a fresh process per row (3 steps). Every row also gives the
achieved model FLOP/s as a share of this machine's measured ``torch.mm`` rate in its dtype.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from transformer_xl.bench.machine import describe, machine_info, matmul_rates
from transformer_xl.bench.memory import measure_memory
from transformer_xl.bench.presets import bench_preset
from transformer_xl.bench.runner import ID_LAWS
from transformer_xl.bench.timing import time_side_by_side
from transformer_xl.bench.xtransformers import (
    XTransformersRunner,
    measure_xtransformers_memory,
)
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


def _runners(preset: str, mode: str, ids: str, args) -> tuple[dict, dict, str | None]:
    """(runners to time, cases whose memory to measure, the authors' bf16 failure or None) for
    the precisions asked for (``--precisions``: float32 and/or bf16)."""
    case = Case(preset, mode, Variant("sdpa"), batch=args.batch, ids=ids, device=args.device)
    runners, memory, bf16_error = {}, {}, None
    want = set(args.precisions.split(","))
    for p, bf16 in (("fp32", False), ("bf16", True)):
        if p not in want:
            continue
        ours = dataclasses.replace(case, variant=Variant("sdpa", bf16=bf16))
        runners[f"ours {p}"] = Runner(ours)
        memory[f"ours {p}"] = lambda c=ours: measure_memory(c)
        if args.authors and bf16:
            bf16_error = _authors_bf16_error(dataclasses.replace(case, batch=1), args.authors)
        if args.authors and not (bf16 and bf16_error):
            runners[f"authors {p}"] = AuthorsRunner(case, args.authors, bf16=bf16)
            memory[f"authors {p}"] = lambda b=bf16: measure_authors_memory(
                case, args.authors, bf16=b
            )
        if args.xtransformers:
            runners[f"xt {p}"] = XTransformersRunner(case, bf16=bf16)
            memory[f"xt {p}"] = lambda b=bf16: measure_xtransformers_memory(case, bf16=b)
        if args.compile and mode == "train":  # where it pays (docs/performance.md)
            v = Variant("sdpa", compile=True, bf16=bf16)
            runners[f"ours {p}+compile"] = Runner(dataclasses.replace(case, variant=v))
    return runners, memory, bf16_error


def run_case(preset: str, mode: str, ids: str, args) -> dict:
    runners, memory, bf16_error = _runners(preset, mode, ids, args)
    warmup = max([args.warmup] + [getattr(r, "fill_steps", 0) + 1 for r in runners.values()])
    timings = time_side_by_side(runners, rounds=args.rounds, steps=args.steps, warmup=warmup)
    peaks = {}  # resident memory is a CPU figure; on a GPU only time is compared here
    if args.device == "cpu":
        peaks = {k: measure().get("step_peak_kib") for k, measure in memory.items()}
    return {
        "preset": preset, "mode": mode, "ids": ids, "authors_bf16_error": bf16_error,
        "seconds_per_step": {k: t.seconds_per_step for k, t in timings.items()},
        "tokens_per_s": {k: t.tokens_per_s for k, t in timings.items()},
        "flops_per_token": {k: t.flops_per_token for k, t in timings.items()},
        "step_peak_kib": peaks,
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


def _share(row: dict, runner: str, rate_gflops: float | None) -> str:
    """Achieved model FLOP/s of ``runner`` as a share of the machine's mm rate in its dtype."""
    tps = row["tokens_per_s"].get(runner)
    if tps is None or not rate_gflops:
        return "-"
    return f"{tps * row['flops_per_token'][runner] / (rate_gflops * 1e9):.0%}"


SPEED = [  # (column, faster, slower)
    ("ours fp32 / authors fp32", "ours fp32", "authors fp32"),
    ("ours bf16 / authors fp32", "ours bf16", "authors fp32"),
    ("ours bf16 / authors bf16", "ours bf16", "authors bf16"),
    ("ours fp32 / xt fp32", "ours fp32", "xt fp32"),
    ("ours bf16 / xt bf16", "ours bf16", "xt bf16"),
    ("ours fp32+compile / authors fp32", "ours fp32+compile", "authors fp32"),
]
MEMORY = [
    ("ours fp32 / authors fp32", "ours fp32", "authors fp32"),
    ("ours bf16 / authors fp32", "ours bf16", "authors fp32"),
    ("ours bf16 / ours fp32", "ours bf16", "ours fp32"),
    ("ours fp32 / xt fp32", "ours fp32", "xt fp32"),
]


def table(rows: list[dict], labels: dict, rates: dict) -> list[str]:
    """Three tables: speed ratios, step-memory ratios, tokens/s with the share of the machine."""
    runners = [k for k in dict.fromkeys(k for r in rows for k in r["tokens_per_s"])]
    speed = [c for c in SPEED if any(c[1] in r["tokens_per_s"] and c[2] in r["tokens_per_s"]
                                     for r in rows)]  # fmt: skip
    memory = [c for c in MEMORY if any(c[2] in r["step_peak_kib"] for r in rows)]
    key = lambda r: f"| {labels[r['preset']]} | {r['mode']} | {r['ids']} |"  # noqa: E731
    out = ["Speed (ratios of tokens/s, > 1: ours faster):", "",
           "| config | mode | ids | " + " | ".join(c[0] for c in speed) + " |",
           "|" + "---|" * (3 + len(speed))]  # fmt: skip
    for r in rows:
        cells = [
            "fails" if slow == "authors bf16" and r["authors_bf16_error"] else _ratio(r, a, slow)
            for _, a, slow in speed
        ]
        out.append(key(r) + " " + " | ".join(cells) + " |")
    out += ["", "Training/evaluation step memory (peak resident growth, ratios, < 1: ours less):",
            "", "| config | mode | ids | " + " | ".join(c[0] for c in memory) + " |",
            "|" + "---|" * (3 + len(memory))]  # fmt: skip
    for r in rows:
        out.append(key(r) + " " + " | ".join(_mem_ratio(r, a, b) for _, a, b in memory) + " |")
    out += ["", "Tokens/s (share of this machine's `torch.mm` rate in the runner's dtype: "
            f"float32 {rates.get('float32')} GFLOP/s, bf16 {rates.get('bfloat16')} GFLOP/s; "
            "model FLOPs by our formula for every runner):", "",
            "| config | mode | ids | " + " | ".join(runners) + " |",
            "|" + "---|" * (3 + len(runners))]  # fmt: skip
    for r in rows:
        cells = []
        for k in runners:
            rate = rates.get("bfloat16" if "bf16" in k else "float32")
            tps = r["tokens_per_s"].get(k)
            cells.append("-" if tps is None else f"{tps:,.0f} ({_share(r, k, rate)})")
        out.append(key(r) + " " + " | ".join(cells) + " |")
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
    rates = result.get("matmul_gflops", {})
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
        f"| `torch.mm` rate (GFLOP/s, float32 / bf16) | {rates.get('float32')} / "
        f"{rates.get('bfloat16')} |",
        "",
        "Peers: the authors' `MemTransformerLM` from kimiyoung/transformer-xl "
        f"(commit {result['authors_commit']}), imported as released (their `.byte()` masks "
        "read as bool, `bench/authors.py`), random weights by their init law; their training "
        "step (Adam, clip 0.25). Ours: `txl bench`'s runner (`sdpa`, fused Adam); evaluation as "
        "`evaluate()` reads (cached keys when mem_len >= tgt_len). x-transformers "
        f"{result.get('xtransformers_version')} (`xt`): `TransformerWrapper` + `Decoder` with "
        "XL memories and rotary positions at our dimensions and dropout, full softmax, the same "
        "training step. bf16 = "
        '`torch.autocast("cpu", torch.bfloat16)` around the model call. Ratios > 1: we are '
        "faster; memory ratios < 1: we use less.",
        "",
    ]
    body = table(result["rows"], labels, rates)
    return "\n".join(head + body + ([""] + notes if notes else [])) + "\n"


def _authors_commit(clone: str) -> str:
    head = Path(clone) / ".git"
    if not head.exists():
        return "unknown (not a git clone)"
    res = subprocess.run(
        ["git", "-C", clone, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return res.stdout.strip() or "unknown"


def _xt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("x-transformers")
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authors", default=None, help="a clone of kimiyoung/transformer-xl")
    ap.add_argument("--xtransformers", action="store_true", help="add x-transformers as a peer")
    ap.add_argument(
        "--ids", default="zipf", help=f"comma-separated token laws, of {', '.join(ID_LAWS)}"
    )
    ap.add_argument("--authors-commit", default=None, help="its commit, if not a git clone")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (step memory: CPU only)")
    ap.add_argument(
        "--precisions", default="fp32,bf16",
        help="fp32 and/or bf16 (bf16 needs bf16 units to mean anything: AMX or avx512_bf16)",
    )  # fmt: skip
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
    laws = [x.strip() for x in args.ids.split(",")]
    if not laws or any(x not in ID_LAWS for x in laws):
        ap.error(f"--ids {args.ids!r}: expected a comma-separated list of {', '.join(ID_LAWS)}")
    precisions = args.precisions.split(",")
    if not precisions or any(p not in ("fp32", "bf16") for p in precisions):
        ap.error(f"--precisions {args.precisions!r}: expected fp32, bf16 or fp32,bf16")
    if not args.authors and not args.xtransformers:
        ap.error("no peer: give --authors CLONE and/or --xtransformers")
    torch.set_num_threads(args.threads)
    result = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_start": list(os.getloadavg()), "env": machine_info(), "threads": args.threads,
        "rounds": args.rounds, "steps": args.steps,
        "authors_commit": (args.authors_commit or _authors_commit(args.authors))
        if args.authors else None,
        "xtransformers_version": _xt_version() if args.xtransformers else None,
        "matmul_gflops": matmul_rates(), "rows": [],
    }  # fmt: skip
    for preset, mode in cases:
        for law in laws:
            print(f"{preset} {mode} {law} ...", file=sys.stderr, flush=True)
            result["rows"].append(run_case(preset, mode, law, args))
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
