"""The adaptive-softmax loss, tiled (``model/tiled_loss.py``) against row blocks
(``adaptive._ClusterNLL`` / ``_nll_no_grad``): time (alternating in one process) and step memory
(each kernel in a fresh process, the growth of the resident set's high-water mark).

    PYTHONPATH=src python benchmarks/adaptive_tiled.py --preset wt103_small --rounds 5
    PYTHONPATH=src python benchmarks/adaptive_tiled.py --preset wt103_base --rows 300 --memory

Only the output layer runs: random hidden states ``[rows, d_model]`` and Zipf-like targets
(``bench.zipf_tokens``; ``--uniform`` for uniform ids) through the preset's adaptive softmax
(one layer built, so the tied tables exist). ``--dtype bfloat16`` runs under CPU autocast in
training (float32 master weights) and with weights cast once in evaluation, the way the package
runs each. The memory child sets ``MALLOC_MMAP_THRESHOLD_`` so that the resident size follows
the live tensors (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from transformer_xl.bench.memory import rss_peak_growth
from transformer_xl.bench.presets import bench_preset
from transformer_xl.bench.runner import zipf_tokens
from transformer_xl.devices import cast_for_inference
from transformer_xl.model import TransformerXLLM

KERNELS = {"tiled": True, "blocks": False}


def build(args):
    """The model's output side, hidden states and targets for one step."""
    cfg = bench_preset(args.preset).config.replace(n_layer=1)
    torch.manual_seed(0)
    model = TransformerXLLM(cfg)
    train = args.mode == "train"
    if args.dtype == "bfloat16" and not train:
        cast_for_inference(model, "bf16")
    dt = next(model.parameters()).dtype
    hidden = torch.randn(args.rows, cfg.d_model, dtype=dt, requires_grad=train)
    g = torch.Generator().manual_seed(1)
    if args.uniform:
        target = torch.randint(0, cfg.vocab_size, (args.rows,), generator=g)
    else:
        target = zipf_tokens(cfg.vocab_size, args.rows, g)
    return model, hidden, target


def step_fn(args, model, hidden, target, tiled: bool):
    from transformer_xl.model.adaptive import adaptive_nll

    train = args.mode == "train"
    autocast = torch.autocast("cpu", torch.bfloat16) if train and args.dtype == "bfloat16" else None

    def step():
        params = model.crit.clusters(model.word_emb)
        grad = contextlib.nullcontext() if train else torch.no_grad()
        with grad, autocast or contextlib.nullcontext():
            nll = adaptive_nll(
                hidden, target, params, model.crit.cluster_weight, model.crit.cluster_bias,
                tiled=tiled,
            )  # fmt: skip
        if train:
            nll.mean().backward()
            model.zero_grad(set_to_none=True)
            hidden.grad = None

    return step


def timing(args) -> dict:
    model, hidden, target = build(args)
    steps = {k: step_fn(args, model, hidden, target, v) for k, v in KERNELS.items()}
    for s in steps.values():
        s()  # warm-up
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, s in steps.items():
            t = time.perf_counter()
            s()
            times[k].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def memory_child(args) -> dict:
    model, hidden, target = build(args)
    step = step_fn(args, model, hidden, target, KERNELS[args.kernel])
    return rss_peak_growth(step, 2)


def memory(args) -> dict:
    out = {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    for k in KERNELS:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", "--kernel", k]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        out[k] = (r["peak_rss_kib"] - r["rss_before_kib"]) / 1024
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="wt103_small", help="a txl bench preset with cutoffs")
    p.add_argument("--rows", type=int, default=512, help="tokens per step (batch x tgt_len)")
    p.add_argument("--mode", choices=("train", "eval"), default="train")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--uniform", action="store_true", help="uniform target ids (stress row)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--memory", action="store_true", help="peak step memory, fresh processes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kernel", choices=tuple(KERNELS), default="tiled", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(memory_child(args)))
        return 0
    what = f"{args.preset} {args.mode} {args.dtype} rows {args.rows}"
    if args.memory:
        mib = memory(args)
        print(
            f"{what}: peak step memory (MiB) " + ", ".join(f"{k} {v:.1f}" for k, v in mib.items())
        )
    ms = timing(args)
    ratio = ms["blocks"] / ms["tiled"]
    print(
        f"{what}: median ms " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items())
        + f" (tiled {ratio:.2f}x the speed of blocks)"
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
