"""x-transformers (lucidrains) as a benchmark peer: what a researcher picks today for a
recurrent-memory transformer, built through its public API at our shapes.

The peer is ``TransformerWrapper(..., max_mem_len=M)`` over a ``Decoder`` with XL memories
(``model(x, mems=mems, return_mems=True)``), rotary positions in place of Transformer-XL's
relative term (less work per query: no position product), flash/SDPA attention, our dimensions
(layers, width, heads x head size, inner width as ``ff_mult``), our dropout and attention
dropout, and a full softmax over the vocabulary (x-transformers has no adaptive softmax). Its
training step is ours (Adam, gradient clipping 0.25); evaluation runs the forward under
``torch.no_grad()``. Weights are its own random init, so losses are not compared; speed and
memory do not depend on the values. Memory starts empty and fills in
:attr:`XTransformersRunner.fill_steps` steps (time after them). bf16 = ``torch.autocast``
around its call, as its README suggests for mixed precision.

An optional dependency (``pip install x-transformers``); nothing of it is copied here.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from transformer_xl.bench.memory import (
    _case_from_dict,
    _case_to_dict,
    rss_peak_growth,
    run_memory_child,
)
from transformer_xl.bench.runner import Case, PeerRunner
from transformer_xl.config import TransformerXLConfig

XTRANSFORMERS = "x-transformers"


def xtransformers_model(cfg: TransformerXLConfig, tgt_len: int, mem_len: int):
    """x-transformers' decoder with XL memories at ``cfg``'s dimensions (see module doc)."""
    try:
        from loguru import logger
        from x_transformers import Decoder, TransformerWrapper
    except ImportError as e:  # an optional peer
        raise ValueError(
            "the x-transformers peer needs the package: pip install x-transformers"
        ) from e
    logger.disable("x_transformers")  # its advice on rotary widths, once per model built
    layers = Decoder(
        dim=cfg.d_model, depth=cfg.n_layer, heads=cfg.n_head, attn_dim_head=cfg.d_head,
        ff_mult=cfg.d_inner / cfg.d_model, rotary_pos_emb=True, attn_flash=True,
        attn_dropout=cfg.dropatt, ff_dropout=cfg.dropout,
    )  # fmt: skip
    return TransformerWrapper(
        num_tokens=cfg.vocab_size, max_seq_len=tgt_len, max_mem_len=mem_len,
        attn_layers=layers, use_abs_pos_emb=False, emb_dropout=cfg.dropout,
        tie_embedding=cfg.tie_weight,
    )  # fmt: skip


class XTransformersRunner(PeerRunner):
    """:class:`~transformer_xl.bench.runner.Runner`'s interface (``step``, ``sync``,
    ``tokens_per_step``) for x-transformers on the same Zipf tokens (see module doc)."""

    def __init__(self, case: Case, *, bf16: bool = False) -> None:
        super().__init__(case, bf16=bf16, who="the x-transformers peer")
        torch.manual_seed(case.seed)
        self.model = xtransformers_model(self.config, self.tlen, self.mlen).to(case.device)
        self.model.train(case.mode == "train")
        self.mems = None
        self.opt = self._optimizer(self.model)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, self.mems = self.model(x, mems=self.mems, return_mems=True)  # [B, T, V]
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    def step(self) -> None:
        x, y = self._segment()
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
            with self.autocast:
                loss = self._loss(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.25)
            self.opt.step()
            self.last_loss = loss.detach()
            return
        with torch.no_grad(), self.autocast:
            self.last_loss = self._loss(x, y)


def measure_xtransformers_memory_here(case: Case, bf16: bool, steps: int, threads: int):
    """Peak resident growth over the resident size after the model is built and its memory
    filled (as :func:`~transformer_xl.bench.authors.measure_authors_memory_here`)."""
    torch.set_num_threads(threads)
    runner = XTransformersRunner(case, bf16=bf16)
    if case.mode == "eval":
        for _ in range(runner.fill_steps):
            runner.step()
    return rss_peak_growth(runner.step, steps)


def measure_xtransformers_memory(
    case: Case, *, bf16: bool = False, steps: int = 3, threads: int = 2
) -> dict:
    """:func:`measure_xtransformers_memory_here` in a fresh Python process."""
    request = {"case": _case_to_dict(case), "bf16": bf16, "steps": steps, "threads": threads}
    return run_memory_child(
        "transformer_xl.bench.xtransformers", request, what="x-transformers", timeout=900
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        req = json.loads(sys.argv[2])
        res = measure_xtransformers_memory_here(
            _case_from_dict(req["case"]), req["bf16"], req["steps"], req["threads"]
        )
        print(json.dumps(res))
    else:
        sys.exit("usage: benchmarks/authors_side_by_side.py (this module serves memory children)")
