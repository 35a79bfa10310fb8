"""How much of a bf16 step is spent outside matrix products: a proxy for matrix units (AMX,
tensor cores) that any CPU can measure, since those units speed up the products only.

    PYTHONPATH=src python benchmarks/bf16_outside_matmul.py --out after.jsonl
    git worktree add /tmp/txl-before f7cdd78
    PYTHONPATH=/tmp/txl-before/src python benchmarks/bf16_outside_matmul.py --label before \\
        --out before.jsonl
    python benchmarks/bf16_outside_matmul.py --table before.jsonl after.jsonl

    # or both at once (each in its own process):
    python benchmarks/bf16_outside_matmul.py --before-tree /tmp/txl-before --out both.jsonl

For every configuration and mode it profiles ``--steps`` bf16 steps (torch.profiler, after the
memory is filled and one warm-up step) and sums the ops' self CPU time in three groups: matrix
products (``mm``, ``bmm``, ``addmm``, ``baddbmm``, ``linear``, ``matmul``, ...), fused attention
kernels (SDPA/flash: products and softmax in one op, kept apart) and everything else. Steps are
the package's own: training under bf16 autocast (forward, backward, clipping, Adam), evaluation
as ``txl eval --precision bf16`` runs it in the tree being measured (weights cast once with
``devices.cast_for_inference`` where it exists; autocast around the pass before it),
with cached keys where ``evaluate.use_cached_keys`` says so.

Configurations: ``tiny256`` and ``wt103_small`` (``txl bench`` presets), ``wt103_base`` (the
authors' WikiText-103 base: 16L, d 410, 267,735 words, div_val 1) and ``enwik8_base`` (12L,
d 512), at small batches. ``--layers``, ``--batch``, ``--tgt-len``, ``--mem-len`` and
``--vocab`` shrink every configuration (to check that the script works on a small machine).
Times on a shared machine are noisy; the shares are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

MATMUL_OPS = {
    "aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::matmul",
    "aten::linear", "aten::einsum", "aten::_addmm_activation", "aten::addmv", "aten::mv",
    "aten::dot",
}  # fmt: skip
ATTENTION_KERNELS = ("scaled_dot_product", "flash_attention")


@dataclass(frozen=True)
class Shape:
    """A configuration at the shape it is profiled at (train and eval lengths)."""

    config: object
    batch: int
    train: tuple[int, int]  # tgt_len, mem_len
    eval: tuple[int, int]


def shapes() -> dict:
    """The four configurations (built lazily: only the tree's own package is imported)."""
    from transformer_xl.bench.presets import bench_preset
    from transformer_xl.config import preset_config

    def bench(name):
        bp = bench_preset(name)
        return Shape(bp.config, bp.batch, (bp.tgt_len, bp.mem_len),
                     (bp.eval_tgt_len, bp.eval_mem_len))  # fmt: skip

    return {
        "tiny256": lambda: bench("tiny256"),
        "wt103_small": lambda: bench("wt103_small"),
        "wt103_base": lambda: Shape(preset_config("wt103_base"), 2, (150, 150), (64, 640)),
        "enwik8_base": lambda: Shape(preset_config("enwik8_base"), 2, (512, 512), (80, 2100)),
    }


def shrink(shape: Shape, args) -> Shape:
    """``shape`` with the command line's size overrides applied."""
    cfg, changes = shape.config, {}
    if args.layers:
        changes["n_layer"] = args.layers
    if args.vocab and cfg.vocab_size > args.vocab:
        cuts = tuple(c for c in cfg.cutoffs if c < args.vocab // 2)
        changes.update(vocab_size=args.vocab, cutoffs=cuts,
                       tie_projs=cfg.tie_projs[: len(cuts) + 1] if cfg.tie_projs else cfg.tie_projs)  # fmt: skip
    cfg = cfg.replace(**changes) if changes else cfg
    train = (args.tgt_len or shape.train[0], args.mem_len or shape.train[1])
    evl = (args.tgt_len or shape.eval[0], args.mem_len or shape.eval[1])
    return Shape(cfg, args.batch or shape.batch, train, evl)


def _data(cfg, batch: int, n: int) -> torch.Tensor:
    from transformer_xl.bench.runner import zipf_tokens

    return zipf_tokens(cfg.vocab_size, batch * (n + 1), torch.Generator().manual_seed(1)).view(
        batch, -1
    )


def train_step(shape: Shape):
    """One bf16 training step of the package (autocast, float32 master weights)."""
    from transformer_xl.model import TransformerXLLM
    from transformer_xl.run.config import TrainConfig
    from transformer_xl.train.optim import build_optimizer

    torch.manual_seed(0)
    model = TransformerXLLM(shape.config).train()
    opt = build_optimizer(model, TrainConfig(optimizer="adam", lr=2.5e-4, weight_decay=0.0))
    tlen, mlen = shape.train
    data = _data(shape.config, shape.batch, tlen)
    x, y = data[:, :tlen], data[:, 1 : tlen + 1]
    state = {"mems": None}
    memory = model.config.segment.replace(mem_len=mlen)

    def step():
        with torch.autocast("cpu", torch.bfloat16):
            out = model(x, labels=y, mems=state["mems"], settings=memory)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["mems"] = out.mems

    return step, -(-mlen // tlen)


def eval_step(shape: Shape):
    """One bf16 evaluation segment as ``txl eval --precision bf16`` runs it in this tree."""
    import contextlib

    from transformer_xl.evaluate import use_cached_keys
    from transformer_xl.model import TransformerXLLM
    from transformer_xl.model.incremental import StreamingLM

    torch.manual_seed(0)
    model = TransformerXLLM(shape.config).eval()
    try:
        from transformer_xl.devices import cast_for_inference
    except ImportError:  # before: autocast around the pass
        region = torch.autocast("cpu", torch.bfloat16)
    else:
        cast_for_inference(model, "bf16")
        region = contextlib.nullcontext()
    tlen, mlen = shape.eval
    settings = model.config.segment.replace(mem_len=mlen, ext_len=0)
    data = _data(shape.config, shape.batch, tlen)
    x, y = data[:, :tlen], data[:, 1 : tlen + 1]
    region.__enter__()  # one region for the whole pass, as evaluate() opens it
    stream = (
        StreamingLM(model, shape.batch, settings)
        if use_cached_keys(model, settings, tlen)
        else None
    )
    state = {"mems": None}

    @torch.no_grad()
    def step():
        if stream is not None:
            stream.score(x, y)
        else:
            state["mems"] = model(x, labels=y, mems=state["mems"], settings=settings).mems

    return step, -(-mlen // tlen)


def split_times(events) -> dict:
    """Self CPU time (ms) of matrix products, fused attention kernels and everything else, and
    the five largest other ops."""
    out = {"matmul": 0.0, "attention_kernel": 0.0, "outside": 0.0}
    others = {}
    for e in events:
        ms = e.self_cpu_time_total / 1e3
        if e.key in MATMUL_OPS or "mkldnn" in e.key and "matmul" in e.key:
            out["matmul"] += ms
        elif any(k in e.key for k in ATTENTION_KERNELS):
            out["attention_kernel"] += ms
        else:
            out["outside"] += ms
            others[e.key] = others.get(e.key, 0.0) + ms
    out["top_outside"] = sorted(others.items(), key=lambda kv: -kv[1])[:5]
    return out


def measure(name: str, mode: str, args) -> dict:
    shape = shrink(shapes()[name](), args)
    step, fill = (train_step if mode == "train" else eval_step)(shape)
    for _ in range(fill + 1):  # memory filled, one warm-up step
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    t = split_times(prof.key_averages())
    total = t["matmul"] + t["attention_kernel"] + t["outside"]
    per = {k: v / args.steps for k, v in t.items() if k != "top_outside"}
    return dict(label=args.label, config=name, mode=mode, per_step_ms=per, total_ms=total / args.steps,
                outside_share=t["outside"] / total if total else 0.0,
                top_outside=[(k, round(v / args.steps, 2)) for k, v in t["top_outside"]],
                shape=dict(layers=shape.config.n_layer, vocab=shape.config.vocab_size, batch=shape.batch,
                           train=shape.train, eval=shape.eval))  # fmt: skip


def table(rows: list[dict]) -> str:
    """Markdown: per configuration and mode, each label's ms outside products and share."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    keys = list(dict.fromkeys((r["config"], r["mode"]) for r in rows))
    by = {(r["config"], r["mode"], r["label"]): r for r in rows}
    head = ["config", "mode"] + [f"{lb}: outside ms/step (share)" for lb in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cfg, mode in keys:
        cells = [cfg, mode]
        for lb in labels:
            r = by.get((cfg, mode, lb))
            cells.append("-" if r is None else
                         f"{r['per_step_ms']['outside']:.1f} ({100 * r['outside_share']:.0f}%)")  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _read(paths) -> list[dict]:
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--configs", default=",".join(("tiny256", "wt103_small", "wt103_base", "enwik8_base"))
    )
    p.add_argument("--modes", default="train,eval")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--label", default="after")
    p.add_argument("--out", help="append one JSON line per row to this file")
    p.add_argument(
        "--before-tree", help="a checkout of the code before (runs both, then the table)"
    )
    p.add_argument(
        "--table", nargs="+", metavar="JSONL", help="only print the table of these files"
    )
    for flag in ("--layers", "--batch", "--tgt-len", "--mem-len", "--vocab"):
        p.add_argument(flag, type=int, default=0, help="shrink every configuration")
    args = p.parse_args(argv)
    if args.table:
        print(table(_read(args.table)))
        return 0
    if args.before_tree:
        return _both(args, argv if argv is not None else sys.argv[1:])
    torch.set_num_threads(args.threads)
    for name in args.configs.split(","):
        for mode in args.modes.split(","):
            row = measure(name, mode, args)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


def _both(args, argv: list[str]) -> int:
    """Run this script on the tree before and on this one, each in its own process."""
    if not args.out:
        raise SystemExit("--before-tree needs --out (the rows of both runs go there)")
    rest, skip = [], False
    for a in argv:  # drop --before-tree DIR and --label X
        if skip:
            skip = False
        elif a in ("--before-tree", "--label"):
            skip = True
        elif not a.startswith(("--before-tree=", "--label=")):
            rest.append(a)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    for label, src in (("before", os.path.join(args.before_tree, "src")), ("after", here)):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
        subprocess.run([sys.executable, __file__, *rest, "--label", label], env=env, check=True)
    print(table(_read([args.out])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
