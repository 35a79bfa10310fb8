"""Evaluation speed: Transformer-XL with memory against a vanilla Transformer. The paper reports
evaluation "up to 1,800+ times faster" (per-token time on one GPU, attention lengths up to 3,800).

The vanilla model (``attn_type=2``: absolute sinusoid positions, ``mem_len=0``) predicts each
token from a window of the last ``L`` tokens, recomputed from scratch for every token, as
Al-Rfou et al. evaluate. Transformer-XL (``attn_type=0``, same sizes) reuses its memory; every
predicted token attends to exactly ``L`` keys (``mem_len = L - 1``; ``same_length`` for segments).
Per-token times, in columns:

- ``vanilla``: one forward pass over the ``L``-token window per token;
- ``xl model()``: ``model(token, mems)`` one token at a time, re-projecting the memory to keys
  and values at every step (what HF's port does);
- ``xl stream``: :class:`StreamingLM`, one token at a time with cached keys, values and
  position terms (the inference path of ``txl generate``);
- ``xl segments``: ``model(segment, mems)`` over segments of ``--segment-len`` tokens (the
  paper's evaluation mode), time per token.

A second table checks that the streaming cost per token stays flat as the context grows past
``mem_len`` (it depends on ``mem_len``, never on how much was read before).

    python benchmarks/eval_speed.py                      # CPU defaults, a few minutes
    python benchmarks/eval_speed.py --device cuda --lengths 128 512 1024 2048 3800
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.model.incremental import StreamingLM
from transformer_xl.segment import SegmentSettings


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_token(fn, n: int, device: torch.device, warmup: int = 1) -> float:
    """Median seconds of ``fn(k)`` over ``n`` calls (after ``warmup`` untimed ones)."""
    for k in range(warmup):
        fn(k)
    times = []
    for k in range(n):
        sync(device)
        t0 = time.perf_counter()
        fn(warmup + k)
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def build(args, attn_type: int, device: torch.device) -> TransformerXLLM:
    cfg = TransformerXLConfig(
        vocab_size=args.vocab,
        n_layer=args.n_layer,
        n_head=args.n_head,
        d_model=args.d_model,
        d_head=args.d_head,
        d_inner=args.d_inner,
        dropout=0.0,
        attn_type=attn_type,
        segment=SegmentSettings(tgt_len=args.segment_len, mem_len=max(args.lengths)),
    )
    torch.manual_seed(0)
    return TransformerXLLM(cfg).to(device).eval()


def measure_length(args, vanilla, xl, length: int, device) -> dict:
    g = torch.Generator().manual_seed(length)
    n_extra = max(args.tokens, args.vanilla_tokens) + 4 * args.segment_len + 2
    data = torch.randint(0, args.vocab, (1, length + n_extra), generator=g).to(device)
    mem_len = length - 1
    fresh = vanilla.config.segment.replace(mem_len=0)
    memory = xl.config.segment.replace(mem_len=mem_len)
    row = dict(length=length)
    with torch.no_grad():
        # vanilla: the whole window for every token, only the last position scored
        def vanilla_step(k):
            h = vanilla(data[:, k : k + length], settings=fresh).hidden[:, -1]
            return vanilla.log_probs(h)

        row["vanilla"] = per_token(vanilla_step, args.vanilla_tokens, device)

        # Transformer-XL reference: memory of mem_len positions, one token per call
        mems = xl(data[:, :mem_len], settings=memory).mems
        state = {"mems": mems}

        def model_step(k):
            out = xl(data[:, mem_len + k : mem_len + k + 1], mems=state["mems"], settings=memory,
                     return_log_probs=True)  # fmt: skip
            state["mems"] = out.mems

        row["xl_model"] = per_token(model_step, args.tokens, device)

        # the streaming path: cached keys, values and position terms
        stream = StreamingLM(xl, 1, memory)
        for s in range(0, mem_len, args.segment_len):
            stream.feed(data[:, s : min(s + args.segment_len, mem_len)])
        row["xl_stream"] = per_token(
            lambda k: stream.feed(data[:, mem_len + k : mem_len + k + 1]), args.tokens, device
        )

        # the paper's evaluation: segments, every query seeing L keys (same_length)
        seg = args.segment_len
        state = {"mems": xl(data[:, :mem_len], settings=memory).mems}

        def segment_step(k):
            x = data[:, mem_len + k * seg : mem_len + (k + 1) * seg]
            out = xl(x, mems=state["mems"], settings=memory.replace(same_length=True),
                     return_log_probs=True)  # fmt: skip
            state["mems"] = out.mems

        row["xl_segments"] = per_token(segment_step, 3, device) / seg
    return row


def measure_latency(args, xl, device) -> list[dict]:
    """Per-token streaming time after reading ``context`` tokens, at a fixed ``mem_len``."""
    mem_len, chunk = args.latency_mem_len, args.segment_len
    g = torch.Generator().manual_seed(1)
    rows = []
    with torch.no_grad():
        stream = StreamingLM(xl, 1, xl.config.segment.replace(mem_len=mem_len))
        read = 0
        for context in args.latency_contexts:
            while read < context:
                n = min(chunk, context - read)
                stream.feed(torch.randint(0, args.vocab, (1, n), generator=g).to(device))
                read += n
            tokens = torch.randint(0, args.vocab, (1, args.tokens + 1), generator=g).to(device)
            t = per_token(lambda k, x=tokens: stream.feed(x[:, k : k + 1]), args.tokens, device)
            read += args.tokens + 1
            rows.append(dict(context=context, mem_len=mem_len, xl_stream=t,
                             memory=int(stream.memory_lengths[0])))  # fmt: skip
    return rows


def environment(device: torch.device) -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = dict(torch=torch.__version__, commit=commit, cpu=cpu, threads=torch.get_num_threads(),
               dtype="float32", device=str(device))  # fmt: skip
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return env


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def print_tables(result: dict) -> None:
    env, a = result["environment"], result["args"]
    print(f"device {env['device']} ({env.get('gpu', env['cpu'])}), torch {env['torch']}, "
          f"{env['threads']} threads, {env['dtype']}, commit {env['commit']}, "
          f"load average before {env.get('load_average')}, after "
          f"{env.get('load_average_after')}")  # fmt: skip
    print(f"model: {a['n_layer']} layers, d_model {a['d_model']}, {a['n_head']}x{a['d_head']} "
          f"heads, d_inner {a['d_inner']}, vocab {a['vocab']}")  # fmt: skip
    print()
    print("| attention length | vanilla ms/token | xl model() ms/token | xl stream ms/token | "
          "xl segments ms/token | speed-up stream | speed-up segments |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["lengths"]:
        cells = [ms(r[k]) for k in ("vanilla", "xl_model", "xl_stream", "xl_segments")]
        cells += [f"{r['vanilla'] / r[k]:.0f}x" for k in ("xl_stream", "xl_segments")]
        print(f"| {r['length']} | " + " | ".join(cells) + " |")
    print()
    print("| context read | mem_len | memory held | xl stream ms/token |")
    print("|---:|---:|---:|---:|")
    for r in result["latency"]:
        print(f"| {r['context']} | {r['mem_len']} | {r['memory']} | {ms(r['xl_stream'])} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 3800])
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--d-head", type=int, default=64)
    p.add_argument("--d-inner", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--tokens", type=int, default=20, help="timed tokens per Transformer-XL row")
    p.add_argument("--vanilla-tokens", type=int, default=3, help="timed tokens per vanilla row")
    p.add_argument("--segment-len", type=int, default=128)
    p.add_argument("--latency-mem-len", type=int, default=512)
    p.add_argument(
        "--latency-contexts", type=int, nargs="+", default=[0, 256, 512, 2048, 8192, 32768]
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if min(args.lengths) < 2:
        raise SystemExit("--lengths must be >= 2")
    device = torch.device(args.device)
    env = environment(device)  # the load average before the run; the one after is added below
    vanilla, xl = build(args, 2, device), build(args, 0, device)
    rows = []
    for length in args.lengths:
        rows.append(measure_length(args, vanilla, xl, length, device))
        times = ", ".join(f"{k} {ms(v)} ms" for k, v in rows[-1].items() if k != "length")
        print(f"L={length}: {times}", flush=True)
    latency = measure_latency(args, xl, device)
    env["load_average_after"] = environment(device).get("load_average")
    result = dict(environment=env, args=vars(args), lengths=rows, latency=latency)
    print()
    print_tables(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
