"""The authors' own PyTorch code as a benchmark peer, imported from a clone of
kimiyoung/transformer-xl (``pytorch/mem_transformer.py``; nothing of it is copied here).

Their 2019 code builds its attention masks with ``.byte()``, which today's torch refuses in
``masked_fill``; :func:`bool_masks` reads ``Tensor.byte`` as ``Tensor.bool`` while their code runs
(the same masks, as booleans), and their softmax module, which parses ``torch.version.cuda`` at
import for a branch that is commented out, is imported with a placeholder version on a CPU-only
torch. Everything else runs as released: time-major tensors, their
adaptive softmax, their training step (``loss.float().mean()``, gradient clipping, Adam).

Weights are random (their ``weights_init`` law: normal, std 0.02; layer norms at 1) and not
ours, so the peer's loss is not compared; speed and memory do not depend on the values. Their
memory starts empty and grows to ``mem_len``: time only after ``ceil(mem_len / tgt_len)``
warm-up steps (:attr:`AuthorsRunner.fill_steps`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from pathlib import Path

import torch

from transformer_xl.bench.memory import (
    _case_from_dict,
    _case_to_dict,
    rss_peak_growth,
    run_memory_child,
)
from transformer_xl.bench.runner import Case, PeerRunner
from transformer_xl.config import TransformerXLConfig

AUTHORS = "authors"


@contextlib.contextmanager
def bool_masks():
    """``Tensor.byte()`` returns a bool tensor inside this block (their masks; see module doc)."""
    saved = torch.Tensor.byte
    torch.Tensor.byte = torch.Tensor.bool
    try:
        yield
    finally:
        torch.Tensor.byte = saved


def load_authors(clone: str | Path):
    """Their ``mem_transformer`` module from a clone of kimiyoung/transformer-xl."""
    root = Path(clone) / "pytorch"
    if not (root / "mem_transformer.py").is_file():
        raise ValueError(
            f"{clone}: not a clone of kimiyoung/transformer-xl (no pytorch/mem_transformer.py)"
        )
    for p in (str(root), str(root / "utils")):
        if p not in sys.path:
            sys.path.insert(0, p)
    saved = torch.version.cuda
    torch.version.cuda = saved or "0.0"  # read at import only (see module doc)
    try:
        return importlib.import_module("mem_transformer")
    finally:
        torch.version.cuda = saved


def authors_model(module, cfg: TransformerXLConfig, tgt_len: int, mem_len: int):
    """Their ``MemTransformerLM`` at ``cfg`` (attn_type 0), initialised by their law."""
    if cfg.attn_type != 0:
        raise ValueError("the authors' peer is built for attn_type 0 only")
    n_clusters = len(cfg.cutoffs)
    tie_projs = list(cfg.tie_projs) if cfg.tie_projs else [False] * (n_clusters + 1)
    model = module.MemTransformerLM(
        cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.d_model, cfg.d_head, cfg.d_inner,
        cfg.dropout, cfg.dropatt, tie_weight=cfg.tie_weight, d_embed=cfg.d_embed,
        div_val=cfg.div_val, tie_projs=tie_projs, pre_lnorm=cfg.pre_lnorm, tgt_len=tgt_len,
        ext_len=0, mem_len=mem_len, cutoffs=list(cfg.cutoffs),
        same_length=cfg.segment.same_length, attn_type=0, clamp_len=cfg.segment.clamp_len,
    )  # fmt: skip
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm.weight" in name:
                p.fill_(1.0)
            elif p.dim() == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    return model


class AuthorsRunner(PeerRunner):
    """:class:`~transformer_xl.bench.runner.Runner`'s interface (``step``, ``sync``,
    ``tokens_per_step``) for the authors' model: their training step or their evaluation
    forward on the same Zipf tokens, optionally under ``torch.autocast`` (``bf16``)."""

    def __init__(self, case: Case, clone: str | Path, *, bf16: bool = False) -> None:
        super().__init__(case, bf16=bf16, who="the authors' peer")
        with bool_masks():
            model = authors_model(load_authors(clone), self.config, self.tlen, self.mlen)
        self.model = model.to(case.device)
        self.model.train(case.mode == "train")
        self.mems = ()
        self.opt = self._optimizer(self.model)

    def _segment(self):
        x, y = super()._segment()
        return x.t().contiguous(), y.t().contiguous()  # their layout: [T, B]

    def step(self) -> None:
        x, y = self._segment()
        with bool_masks():
            if self.opt is not None:  # their train.py's step
                self.model.zero_grad()
                with self.autocast:
                    ret = self.model(x, y, *self.mems)
                loss, self.mems = ret[0], ret[1:]
                loss = loss.float().mean().type_as(loss)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.25)
                self.opt.step()
                self.last_loss = loss.detach()
                return
            with torch.no_grad(), self.autocast:
                ret = self.model(x, y, *self.mems)
            self.mems = ret[1:]
            self.last_loss = ret[0].float().mean()


def measure_authors_memory_here(case: Case, clone: str, bf16: bool, steps: int, threads: int):
    """:func:`~transformer_xl.bench.memory.measure_memory_here` for the authors' model: peak
    resident growth over the resident size after the model is built and its memory filled."""
    torch.set_num_threads(threads)
    runner = AuthorsRunner(case, clone, bf16=bf16)
    if case.mode == "eval":  # their memory grows to mem_len first (ours and HF's start full)
        for _ in range(runner.fill_steps):
            runner.step()
    return rss_peak_growth(runner.step, steps)


def measure_authors_memory(
    case: Case, clone: str, *, bf16: bool = False, steps: int = 3, threads: int = 2
) -> dict:
    """:func:`measure_authors_memory_here` in a fresh Python process."""
    request = {"case": _case_to_dict(case), "clone": str(clone), "bf16": bf16, "steps": steps,
               "threads": threads}  # fmt: skip
    return run_memory_child(
        "transformer_xl.bench.authors", request, what="the authors' model", timeout=900
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        req = json.loads(sys.argv[2])
        res = measure_authors_memory_here(
            _case_from_dict(req["case"]), req["clone"], req["bf16"], req["steps"], req["threads"]
        )
        print(json.dumps(res))
    else:
        sys.exit("usage: benchmarks/authors_side_by_side.py (this module serves memory children)")
