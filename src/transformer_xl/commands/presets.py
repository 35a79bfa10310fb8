"""``txl presets``: the paper's models with their sizes and evaluation settings."""

from __future__ import annotations

import json

from transformer_xl.model.transformer import count_parameters
from transformer_xl.presets import TABLE


def run(args) -> int:
    rows = []
    for name, row in TABLE.items():
        cfg, ev = row.config, row.eval
        rows.append(
            dict(name=name, params=count_parameters(cfg), paper_params=row.paper.params,
                 n_layer=cfg.n_layer, d_model=cfg.d_model, vocab_size=cfg.vocab_size,
                 train_tgt_len=cfg.segment.tgt_len, train_mem_len=cfg.segment.mem_len,
                 eval={k: getattr(ev, k) for k in ("tgt_len", "mem_len", "clamp_len",
                                                   "same_length")})
        )  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'preset':<14}{'params':>14}{'paper':>10}  layers  d_model  vocab    eval tgt/mem/clamp"
    )
    for r in rows:
        paper = f"{r['paper_params'] / 1e6:.0f}M" if r["paper_params"] else "-"
        e = r["eval"]
        print(
            f"{r['name']:<14}{r['params']:>14,}{paper:>10}  {r['n_layer']:>6}  {r['d_model']:>7}  "
            f"{r['vocab_size']:>7}  {e['tgt_len']}/{e['mem_len']}/{e['clamp_len']}"
        )
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser("presets", help=help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
