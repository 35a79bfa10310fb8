"""TensorFlow vs PyTorch implementation: parity at a paper size and CPU throughput.

1. Parity: a ``wt103_base``-shaped model (16 layers, d 410, adaptive softmax over 267,735 words,
   random weights) saved by PyTorch and loaded by TensorFlow; per-token log-probabilities over
   ``--segments`` segments with memory; max abs difference reported (float32).
2. Speed (``tiny`` preset, 4 layers, d 128): evaluation tokens/s (forward with memory, full
   softmax loss) and training tokens/s (forward, backward, Adam step) for PyTorch eager, TF
   graph (tf.function) and TF + XLA, after warm-up, each framework on ``--threads`` CPU threads
   (default 1: on a shared machine more threads measure the neighbours).

Usage: ``python benchmarks/tf_parity_speed.py [--json out.json] [--skip-parity]``.
"""

from __future__ import annotations

# isort: off
import transformer_xl.tf  # noqa: F401  (before TensorFlow: see its docstring)

# isort: on
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np
import tensorflow as tf
import torch

from transformer_xl import TransformerXLLM
from transformer_xl.presets import preset_config
from transformer_xl.run.config import TrainConfig
from transformer_xl.tf import TFTransformerXLLM
from transformer_xl.tf.train import TFTrainer


def parity(segments: int, batch: int, tgt_len: int, mem_len: int) -> dict:
    cfg = preset_config("wt103_base", dropout=0.0)
    torch.manual_seed(0)
    tm = TransformerXLLM(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        tm.save_pretrained(d)
        fm = TFTransformerXLLM.from_pretrained(d)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.vocab_size, (batch, segments * tgt_len + 1))
    worst, t_mems, f_mems = 0.0, None, None
    run = cfg.segment.replace(mem_len=mem_len)
    for s in range(segments):
        x = ids[:, s * tgt_len : (s + 1) * tgt_len]
        y = ids[:, s * tgt_len + 1 : (s + 1) * tgt_len + 1]
        with torch.no_grad():
            o = tm(torch.from_numpy(x), labels=torch.from_numpy(y), mems=t_mems, settings=run,
                   return_log_probs=True)  # fmt: skip
        f = fm(x, y, f_mems, run, return_log_probs=True)
        t_mems, f_mems = o.mems, f.mems
        worst = max(worst, float(np.abs(o.log_probs.numpy() - f.log_probs.numpy()).max()))
    return {"preset": "wt103_base", "params": tm.num_parameters(), "segments": segments,
            "batch": batch, "tgt_len": tgt_len, "mem_len": mem_len,
            "max_abs_diff_log_probs": worst}  # fmt: skip


def timed(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def tf_speed(cfg, x, y, *, xla: bool, steps: int) -> tuple[float, float]:
    """Seconds per evaluation step and per training step of the TF model (graph or XLA)."""
    fm = TFTransformerXLLM(cfg)
    fx, fy = tf.constant(x), tf.constant(y)
    mems = fm(fx, fy).mems
    step = tf.function(
        lambda a, b, m: fm(a, b, m, dense_softmax=xla).loss, jit_compile=xla, autograph=False
    )
    evaluation = timed(lambda: step(fx, fy, mems).numpy(), steps, 2)
    s = TrainConfig(batch_size=x.shape[0], segment=cfg.segment.replace(tgt_len=x.shape[1]),
                    compile=xla)  # fmt: skip
    trainer = TFTrainer(fm, s, tf.distribute.get_strategy())
    seg = {"input_ids": fx, "labels": fy, "loss_mask": tf.ones_like(fx, tf.bool),
           "first": tf.constant(False)}  # fmt: skip
    trainer.mems = mems
    return evaluation, timed(lambda: trainer.step(seg, 1e-4), steps, 2)


def speed(batch: int, tgt_len: int, steps: int) -> dict:
    cfg = preset_config("tiny", dropout=0.0)
    rng = np.random.default_rng(1)
    x = rng.integers(0, cfg.vocab_size, (batch, tgt_len))
    y = rng.integers(0, cfg.vocab_size, (batch, tgt_len))
    tokens = batch * tgt_len
    out = {"preset": "tiny", "batch": batch, "tgt_len": tgt_len, "mem_len": cfg.segment.mem_len}

    tm = TransformerXLLM(cfg)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    mems = tm(tx, labels=ty).mems
    opt = torch.optim.Adam(tm.parameters(), lr=1e-4)

    def torch_eval():
        with torch.no_grad():
            tm.eval()(tx, labels=ty, mems=mems)

    def torch_train():
        loss = tm.train()(tx, labels=ty, mems=mems).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    out["torch_eval_tok_s"] = tokens / timed(torch_eval, steps, 2)
    out["torch_train_tok_s"] = tokens / timed(torch_train, steps, 2)

    for name, xla in (("tf", False), ("tf_xla", True)):
        ev, tr = tf_speed(cfg, x, y, xla=xla, steps=steps)
        out[f"{name}_eval_tok_s"], out[f"{name}_train_tok_s"] = tokens / ev, tokens / tr
    return out


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "commit": commit, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
        "torch": torch.__version__, "tensorflow": tf.__version__, "dtype": "float32",
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json")
    p.add_argument("--skip-parity", action="store_true")
    p.add_argument("--segments", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each framework")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    result = {"environment": environment()}
    if not args.skip_parity:
        result["parity"] = parity(args.segments, batch=2, tgt_len=32, mem_len=32)
        print(json.dumps(result["parity"]), flush=True)
    result["speed"] = speed(batch=8, tgt_len=64, steps=args.steps)
    result["environment"]["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
