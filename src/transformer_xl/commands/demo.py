"""``txl demo``: a short real training run of the ``tiny`` preset on text that ships with
CPython (the English help topics in ``pydoc_data``), bytes as tokens, with recurrence memory;
prints training loss, held-out bits per byte and the unigram baseline."""

from __future__ import annotations

import math
import time


def corpus_bytes() -> bytes:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")


def run(args) -> int:
    import torch

    from transformer_xl import TransformerXLConfig, TransformerXLLM

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = torch.frombuffer(bytearray(corpus_bytes()), dtype=torch.uint8).long()
    n_valid = len(data) // 20
    train, valid = data[:-n_valid], data[-n_valid:]
    counts = torch.bincount(train, minlength=256).double() + 1.0
    unigram_bpb = -(
        torch.bincount(valid, minlength=256).double() * (counts / counts.sum()).log2()
    ).sum()
    unigram_bpb = (unigram_bpb / len(valid)).item()

    cfg = TransformerXLConfig.from_preset("tiny", vocab_size=256)
    model = TransformerXLLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    B, T = args.batch, cfg.tgt_len

    def streams(x: torch.Tensor) -> torch.Tensor:  # [N] -> [B, N // B]
        n = (len(x) - 1) // B
        return x[: n * B + 1], n

    print(
        f"txl demo: tiny preset, {model.num_parameters():,} parameters, {len(train):,} training bytes"
    )
    x, n = streams(train)
    xs, ys = x[:-1].view(B, n), x[1:].view(B, n)
    mems, t0, step = None, time.time(), 0
    model.train()
    for step in range(1, args.steps + 1):
        s = ((step - 1) * T) % (n - T)
        if s < T:
            mems = None  # wrapped around: start the streams over
        out = model(xs[:, s : s + T], labels=ys[:, s : s + T], mems=mems)
        mems = out.mems
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        if step % args.log_every == 0 or step == 1:
            tok_s = step * B * T / (time.time() - t0)
            print(
                f"step {step:4d}  loss {out.loss.item():.3f}  bpb {out.loss.item() / math.log(2):.3f}  {tok_s:,.0f} tok/s"
            )

    model.eval()
    total, count, mems = 0.0, 0, None
    vx, vn = streams(valid)
    vxs, vys = vx[:-1].view(B, vn), vx[1:].view(B, vn)
    with torch.no_grad():
        for s in range(0, vn, T):
            out = model(vxs[:, s : s + T], labels=vys[:, s : s + T], mems=mems, mem_len=2 * T)
            mems = out.mems
            total += out.token_nll.sum().item()
            count += out.token_nll.numel()
    bpb = total / count / math.log(2)
    print(
        f"held-out: {count:,} bytes scored, {bpb:.3f} bits/byte (unigram baseline {unigram_bpb:.3f})"
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="train the tiny preset briefly on CPython's help text")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=25)
    p.set_defaults(func=run)
