"""Training quality for a fixed budget on real text: our trainer against HF's port of the
authors' PyTorch model (``TransfoXLLMHeadModel``, transformers 4.37.2) at the same configuration.

Both train the ``tiny`` architecture on the built-in corpus (CPython's reference-manual text,
bytes) with the same data stream (16 x 64 bytes per step, memory 64), Adam, the same warm-up +
cosine schedule, clipping and seed, for ``--steps`` steps; then both are scored on the same test
split with the same settings (tgt 64, mem 64, every byte once). Ours runs through the library's
``Trainer.train_step``; HF's through the equivalent plain loop. Prints a Markdown table row per
model: test bpc, CPU seconds per step (``time.process_time``, robust to a shared machine).

    python benchmarks/training_quality.py --steps 300 --threads 1 --work /tmp/tq
"""

from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import torch

from transformer_xl.run.config import resolve
from transformer_xl.train.data import open_data
from transformer_xl.train.distributed import init_distributed
from transformer_xl.train.loop import Trainer
from transformer_xl.train.optim import set_lr
from transformer_xl.train.schedule import scheduled_lr


def ours(run, data, env, work: Path, steps: int) -> tuple[torch.nn.Module, float]:
    t = Trainer(run, work / "ours", data, env, resume=False, out=io.StringIO())
    t.model.train()
    cpu = time.process_time()
    for _ in range(steps):
        seg = next(t.stream)
        t.train_step(seg.input_ids, seg.labels, seg.loss_mask)
        t.progress.step += 1
    cpu = (time.process_time() - cpu) / steps
    t.close()
    return t.model, cpu


def hf_model(run):
    from transformers import TransfoXLConfig, TransfoXLLMHeadModel

    m = run.model
    cfg = TransfoXLConfig(
        vocab_size=m.vocab_size, cutoffs=[], d_model=m.d_model, d_embed=m.d_model,
        n_head=m.n_head, d_head=m.d_head, d_inner=m.d_inner, div_val=1, pre_lnorm=False,
        n_layer=m.n_layer, mem_len=run.train.segment.mem_len, clamp_len=-1, same_length=False,
        untie_r=m.untie_r, dropout=m.dropout, dropatt=m.dropatt, init="normal",
        init_std=m.init_std, proj_init_std=m.proj_init_std, layer_norm_epsilon=m.layer_norm_eps,
        adaptive=True, tie_word_embeddings=True,
    )  # fmt: skip
    return TransfoXLLMHeadModel(cfg)


def hf_nll(model, x, y, mems):
    """``[B, T]`` NLL of ``y`` under HF's model, and its new memory."""
    out = model(input_ids=x, mems=mems)
    nll = -out.prediction_scores.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return nll, out.mems


def hf(run, data, steps: int) -> tuple[torch.nn.Module, float]:
    cfg = run.train
    torch.manual_seed(cfg.seed)
    model = hf_model(run)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    stream = data.train_stream(batch_size=cfg.batch_size, tgt_len=cfg.segment.tgt_len, ext_len=0,
                               rank=0, world_size=1, seed=cfg.seed)  # fmt: skip
    model.train()
    mems = None
    cpu = time.process_time()
    for step in range(1, steps + 1):
        seg = next(stream)
        if seg.first:
            mems = None
        nll, mems = hf_nll(model, seg.input_ids, seg.labels, mems)
        loss = nll[seg.loss_mask].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        set_lr(opt, scheduled_lr(step, cfg))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, (time.process_time() - cpu) / steps


@torch.no_grad()
def test_bpc(model, data, run, is_hf: bool) -> tuple[float, int]:
    model.eval()
    cfg = run.train
    total, count, mems = 0.0, 0, None
    batches = data.eval_batches("test", batch_size=cfg.batch_size, tgt_len=cfg.segment.tgt_len,
                                rank=0, world_size=1)  # fmt: skip
    for x, y, mask in batches:
        if is_hf:
            nll, mems = hf_nll(model, x, y, mems)
        else:
            out = model(x, labels=y, mems=mems)  # the model's settings: the training ones
            nll, mems = out.token_nll, out.mems
        total += nll.double()[mask].sum().item()
        count += int(mask.sum())
    return total / count / math.log(2), count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="/tmp/txl-training-quality")
    p.add_argument("--skip-hf", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    env = init_distributed("cpu")
    data = open_data("builtin:cpython-docs", work, env=env)
    over = [f"max_steps={a.steps}", f"threads={a.threads}", "tensorboard=false"]
    run = resolve("tiny", None, over, vocab_size=data.vocab_size)
    print(f"| model | steps | test bpc | test bytes | CPU s/step ({a.threads} thread) |")
    print("|---|---|---|---|---|")
    model, cpu = ours(run, data, env, work, a.steps)
    bpc, n = test_bpc(model, data, run, is_hf=False)
    print(f"| transformer_xl (ours) | {a.steps} | {bpc:.4f} | {n:,} | {cpu:.3f} |", flush=True)
    if not a.skip_hf:
        model, cpu = hf(run, data, a.steps)
        bpc, n = test_bpc(model, data, run, is_hf=True)
        print(
            f"| HF TransfoXL 4.37.2 (authors' model) | {a.steps} | {bpc:.4f} | {n:,} | {cpu:.3f} |"
        )
    print(f"unigram (add-one, train counts): {data.unigram_bits('test'):.4f} bpc")


if __name__ == "__main__":
    main()
