"""CPU throughput of the ONNX export in onnxruntime against the PyTorch model it came from.

Both run the same segment step (``B`` streams, ``T`` tokens, a memory of ``M`` rows), carrying
the memory from segment to segment: PyTorch as ``model(ids, mems=mems, return_log_probs=True)``
(its default attention), onnxruntime as :class:`transformer_xl.export.onnx_runtime.OnnxLM.step`
with the fixed-size memory. Both produce the full ``[B, T, V]`` log-probabilities. Tokens per
second over ``--segments`` segments after ``--warmup`` ones, the same thread count for both;
the first segments of each also check that the two agree (max abs difference printed).

    python benchmarks/onnx_speed.py --preset wt103_base --batch 1 --tgt-len 64 --mem-len 640
    python benchmarks/onnx_speed.py --tiny   # seconds: checks that the script works

Writes JSON (``--out``) with the machine, thread count and commit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from transformer_xl.bench.machine import git_commit, machine_info
from transformer_xl.config import TransformerXLConfig
from transformer_xl.export.onnx import export_onnx, export_settings
from transformer_xl.export.onnx_runtime import OnnxLM
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.presets import preset_config

TINY = dict(vocab_size=500, n_layer=2, n_head=2, d_model=32, d_head=16, d_inner=64,
            cutoffs=(100, 300), div_val=2)  # fmt: skip


def build(args) -> TransformerXLLM:
    if args.tiny:
        cfg = TransformerXLConfig(**TINY, dropout=0.0)
    else:
        cfg = preset_config(args.preset, dropout=0.0, dropatt=0.0)
    torch.manual_seed(0)
    return TransformerXLLM(cfg).eval()


def time_torch(model, batches, mem_len: int, warmup: int) -> tuple[float, list[np.ndarray]]:
    settings = model.config.segment.replace(mem_len=mem_len)
    mems, outs, start = None, [], None
    with torch.no_grad():
        for i, ids in enumerate(batches):
            if i == warmup:
                start = time.perf_counter()
            o = model(torch.from_numpy(ids), mems=mems, settings=settings, return_log_probs=True)
            mems = o.mems
            if i < 3:
                outs.append(o.log_probs.numpy())
    return time.perf_counter() - start, outs


def time_onnx(lm: OnnxLM, batches, warmup: int) -> tuple[float, list[np.ndarray]]:
    state, outs, start = lm.start(batches[0].shape[0]), [], None
    for i, ids in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        log_probs, state = lm.step(ids, state)
        if i < 3:
            outs.append(log_probs)
    return time.perf_counter() - start, outs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="wt103_base")
    p.add_argument("--tiny", action="store_true", help="a tiny model (checks the script)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tgt-len", type=int, default=64)
    p.add_argument("--mem-len", type=int, default=640)
    p.add_argument("--segments", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args)
    settings = export_settings(model, {"mem_len": args.mem_len, "tgt_len": args.tgt_len})
    rng = np.random.default_rng(0)
    shape = (args.batch, args.tgt_len)
    batches = [
        rng.integers(0, model.config.vocab_size, shape) for _ in range(args.warmup + args.segments)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, tmp, settings=settings)
        lm = OnnxLM(tmp, threads=args.threads)
        t_onnx, o_onnx = time_onnx(lm, batches, args.warmup)
    t_torch, o_torch = time_torch(model, batches, args.mem_len, args.warmup)
    tokens = args.segments * args.batch * args.tgt_len
    diff = max(float(np.abs(a - b).max()) for a, b in zip(o_onnx, o_torch, strict=True))
    result = {
        "model": "tiny" if args.tiny else args.preset,
        "batch": args.batch, "tgt_len": args.tgt_len, "mem_len": args.mem_len,
        "threads": args.threads, "segments": args.segments,
        "tokens_per_s": {"pytorch": tokens / t_torch, "onnxruntime": tokens / t_onnx},
        "onnxruntime_over_pytorch": t_torch / t_onnx,
        "max_abs_diff_first_segments": diff,
        "machine": machine_info(), "commit": git_commit(), "torch": torch.__version__,
    }  # fmt: skip
    print(
        f"{result['model']} B={args.batch} T={args.tgt_len} M={args.mem_len} "
        f"threads={args.threads}: PyTorch {tokens / t_torch:,.0f} tok/s, onnxruntime "
        f"{tokens / t_onnx:,.0f} tok/s (x{t_torch / t_onnx:.2f}); max |diff| {diff:.2e}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
