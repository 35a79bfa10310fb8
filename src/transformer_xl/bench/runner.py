"""What is timed: a variant (ours with an attention kernel, or HF's port) in one mode, built from
the same weights, stepping one segment at a time with the real training step's parts."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from transformer_xl.bench.flops import _sync, model_flops_per_token
from transformer_xl.bench.presets import BenchPreset, bench_preset
from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.hf import config_from_hf, from_hf_model, hf_config_from_ours
from transformer_xl.devices import torch_dtype
from transformer_xl.evaluate import use_cached_keys
from transformer_xl.model import TransformerXLLM
from transformer_xl.model.incremental import StreamingLM
from transformer_xl.model.kernels.registry import ATTN_IMPLS
from transformer_xl.precision import DTYPE_NAMES
from transformer_xl.run.config import TrainConfig
from transformer_xl.segment import SegmentSettings
from transformer_xl.train.optim import build_optimizer

MODES = ("train", "eval", "gen")
DTYPES = {DTYPE_NAMES[p]: torch_dtype(p) for p in ("fp32", "bf16")}  # what bench runs in
PEER = "hf"
GEN_REPEAT = 8  # generation steps (tokens) per timed step


def hf_config(cfg: TransformerXLConfig):
    """HF's ``TransfoXLConfig`` for our config, through the converter's mapping
    (``convert.hf.hf_config_from_ours``); HF computes the same function only with the ``"torch"``
    same-length window and HF-expressible projection ties (checked: the converted model's
    config must map back to ours)."""
    from transformers import TransfoXLConfig

    if cfg.segment.same_length and cfg.segment.window_keys != "mem_len":
        raise ValueError(
            "HF's TransfoXL needs window_keys='mem_len' (each query sees mem_len keys)"
        )
    hcfg = TransfoXLConfig(**hf_config_from_ours(cfg))
    back = config_from_hf(hcfg)
    if back.tie_projs != cfg.tie_projs and any(cfg.tie_projs or ()):
        raise ValueError(f"HF's TransfoXL cannot express tie_projs={cfg.tie_projs}")
    return hcfg


def hf_port_available() -> bool:
    """Whether HF's port can be built: transformers 4.x has ``TransfoXLLMHeadModel``; 5 removed
    it, and a machine may have no transformers at all."""
    try:
        from transformers import TransfoXLLMHeadModel  # noqa: F401
    except ImportError:
        return False
    return True


def build_pair(cfg: TransformerXLConfig, *, seed: int = 0):
    """HF's model and ours with the same weights (ours loaded from HF's through the key map)."""
    from transformers import TransfoXLLMHeadModel

    torch.manual_seed(seed)
    hf = TransfoXLLMHeadModel(hf_config(cfg))
    ours = from_hf_model(hf)
    return hf, ours


def build_one(cfg: TransformerXLConfig, hf: bool):
    """Only HF's model or only ours (random weights): for memory measurements."""
    from transformers import TransfoXLLMHeadModel

    hcfg = hf_config(cfg)
    return TransfoXLLMHeadModel(hcfg) if hf else TransformerXLLM(config_from_hf(hcfg))


# ---------------------------------------------------------------------------- variants
def with_peer(variants: list, compare: str | None) -> list:
    """``variants`` plus the peer when ``--compare`` names it (refused: any other name)."""
    if compare is None:
        return variants
    if compare != PEER:
        raise ValueError(f"--compare {compare!r}: the only peer is {PEER!r}")
    return variants if any(v.name == PEER for v in variants) else [*variants, Variant(PEER)]


def _peer_settings(cfg: TransformerXLConfig, mem_len: int) -> SegmentSettings:
    """Our settings at a benchmark's memory, with HF's same-length window (the peer's)."""
    return cfg.segment.replace(mem_len=mem_len, window_keys="mem_len")


@dataclass(frozen=True)
class Variant:
    """One thing to time: ``"hf"`` (the peer) or our model with an attention kernel; flags
    ``+compile`` (``torch.compile`` of the model: forward and backward graphs) and ``+bf16``
    (bfloat16 autocast whatever the run's dtype), e.g. ``"sdpa+compile+bf16"``."""

    name: str  # "hf" or one of our attention impls (model/kernels/registry.py, or "auto")
    compile: bool = False
    bf16: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, *flags = text.split("+")
        if name != PEER and name not in ATTN_IMPLS:
            raise ValueError(
                f"variant {text!r}: expected hf or one of {ATTN_IMPLS}, optionally +compile"
            )
        if any(f not in ("compile", "bf16") for f in flags):
            raise ValueError(f"variant {text!r}: the flags are +compile and +bf16")
        return cls(name, compile="compile" in flags, bf16="bf16" in flags)

    @property
    def label(self) -> str:
        return self.name + ("+compile" if self.compile else "") + ("+bf16" if self.bf16 else "")


@dataclass(frozen=True)
class Case:
    preset: str
    mode: str
    variant: Variant
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    batch: int | None = None  # None: the preset's
    ids: str = "zipf"  # the token law: "zipf" (word-like, default) or "uniform" (a stress row)


def _lengths(bp: BenchPreset, mode: str) -> tuple[int, int, int]:
    """(batch, tgt_len, mem_len) for a mode."""
    if mode == "train":
        return bp.batch, bp.tgt_len, bp.mem_len
    if mode == "eval":
        return bp.batch, bp.eval_tgt_len, bp.eval_mem_len
    return 1, 1, bp.gen_mem_len


def zipf_tokens(vocab: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` ids from the log-uniform law ``P(k) = log((k+2)/(k+1)) / log(V+1)`` (word-like)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (torch.exp(u * math.log(vocab + 1)) - 1).floor().long().clamp(0, vocab - 1)


ID_LAWS = ("zipf", "uniform")


def bench_tokens(case: Case, vocab: int, batch: int, tlen: int) -> torch.Tensor:
    """The timed token ids ``[batch, tlen * 8 + 1]`` for ``case``: word-like (:func:`zipf_tokens`,
    which sends most rows to an adaptive softmax's head cluster) or uniform (every cluster as
    often as its width: the stress row). The same ids for every runner of a case's seed."""
    if case.ids not in ID_LAWS:
        raise ValueError(f"token law {case.ids!r}: expected one of {ID_LAWS}")
    g = torch.Generator().manual_seed(case.seed + 1)
    n = batch * (tlen * 8 + 1)
    if case.ids == "uniform":
        return torch.randint(0, vocab, (n,), generator=g).view(batch, -1)
    return zipf_tokens(vocab, n, g).view(batch, -1)


def next_segment(data: torch.Tensor, pos: int, tlen: int):
    """Inputs and labels ``[B, tlen]`` at ``pos`` of ``data`` ``[B, N]`` (back to the start when
    the rest is too short) and the position after them."""
    if pos + tlen > data.shape[1] - 1:
        pos = 0
    return data[:, pos : pos + tlen], data[:, pos + 1 : pos + tlen + 1], pos + tlen


def _optimizer(model, is_hf: bool):
    """Adam at lr 2.5e-4: ours as ``txl train`` builds it (``train.optim``: fused where torch
    has it), the peer's as its own training code does (``torch.optim.Adam`` defaults)."""
    if is_hf:
        return torch.optim.Adam(model.parameters(), lr=2.5e-4)
    return build_optimizer(model, TrainConfig(optimizer="adam", lr=2.5e-4, weight_decay=0.0))


class Runner:
    """One variant in one mode, ready to run ``step()`` repeatedly (one segment per step)."""

    def __init__(self, case: Case, *, same_weights: bool = True) -> None:
        self.case = case
        bp = bench_preset(case.preset)
        cfg = bp.config
        batch, tlen, mlen = _lengths(bp, case.mode)
        if case.batch is not None and case.mode != "gen":
            batch = case.batch
        self.tokens_per_step = batch * tlen
        self.repeat = GEN_REPEAT if case.mode == "gen" else 1  # one token is too short to time
        self.flops_per_token = model_flops_per_token(cfg, tlen, mlen, batch) * (
            3 if case.mode == "train" else 1
        )
        device = case.device
        dtype = torch.bfloat16 if case.variant.bf16 else DTYPES[case.dtype]
        is_hf = case.variant.name == PEER
        if is_hf or hf_port_available():
            model = (
                build_pair(cfg, seed=case.seed)[0 if is_hf else 1]
                if same_weights
                else build_one(cfg, is_hf)
            )
        else:  # no HF port here (transformers 5, or none): ours at its own initialisation
            torch.manual_seed(case.seed)
            model = TransformerXLLM(cfg)
        if is_hf:
            model.reset_memory_length(mlen)
        model.to(device)
        if not is_hf:
            model.set_attn_impl(case.variant.name)  # resolved for the device it runs on
        self.attention = None if is_hf else model.attention.describe()  # what each path runs
        model.train(case.mode == "train")
        self.model = model
        fwd = torch.compile(model) if case.variant.compile else model
        self.autocast = (
            torch.autocast(device_type=device.split(":")[0], dtype=dtype)
            if dtype != torch.float32
            else nullcontext()
        )
        self.data = bench_tokens(case, cfg.vocab_size, batch, tlen).to(device)
        self.pos, self.tlen = 0, tlen
        if is_hf:
            self.mems = None  # HF starts from mem_len zero vectors by itself
        else:
            self.mems = tuple(
                torch.zeros(batch, mlen, cfg.d_model, device=device) for _ in range(cfg.n_layer)
            )
        run_kw = {} if is_hf else {"settings": _peer_settings(model.config, mlen)}
        self.opt = _optimizer(model, is_hf) if case.mode == "train" else None
        self.stream = self._stream(model, batch, tlen, run_kw) if not is_hf else None
        self._forward = self._make_forward(fwd, is_hf, run_kw)
        self.next_token = self.data[:, :1]
        self.last_loss = float("nan")

    def _stream(self, model, batch: int, tlen: int, run_kw: dict) -> StreamingLM | None:
        """Evaluation as ``evaluate()`` reads it: with cached keys and values where the memory
        is at least a segment long (``use_cached_keys``), the cache filled to ``mem_len`` first
        (as the peer starts from ``mem_len`` zero vectors: the same keys from the first step)."""
        if self.case.mode != "eval" or self.case.variant.compile:
            return None
        settings = run_kw["settings"].replace(ext_len=0)  # what forward gets
        if not use_cached_keys(model, settings, tlen):
            return None
        with torch.no_grad(), self.autocast:
            stream = StreamingLM(model, batch, settings)
            for _ in range(-(-settings.mem_len // tlen)):
                stream.score(*self._segment())
        return stream

    def _make_forward(self, fwd, is_hf: bool, run_kw: dict):
        mode = self.case.mode

        def forward(x: torch.Tensor, y: torch.Tensor):
            """-> (loss or None, next-token scores or None, new mems)"""
            if is_hf:
                if mode == "gen":
                    out = fwd(input_ids=x, mems=self.mems)
                    return None, out.prediction_scores[:, -1], out.mems
                out = fwd(input_ids=x, mems=self.mems, labels=x)  # HF shifts labels itself
                return out.loss, None, out.mems
            if mode == "gen":
                out = fwd(x, mems=self.mems, return_log_probs=True, **run_kw)
                return None, out.log_probs[:, -1], out.mems
            out = fwd(x, labels=y, mems=self.mems, **run_kw)
            return out.loss, None, out.mems

        return forward

    def _segment(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, self.pos = next_segment(self.data, self.pos, self.tlen)
        return x, y

    def step(self) -> None:
        mode = self.case.mode
        if mode == "train":
            x, y = self._segment()
            with self.autocast:
                loss, _, self.mems = self._forward(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.25)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.last_loss = loss.detach()
            return
        with torch.no_grad(), self.autocast:
            if mode == "eval" and self.stream is not None:
                x, y = self._segment()
                self.last_loss = -self.stream.score(x, y).mean()
            elif mode == "eval":
                x, y = self._segment()
                loss, _, self.mems = self._forward(x, y)
                self.last_loss = loss
            else:  # greedy decoding, one token per step
                _, scores, self.mems = self._forward(self.next_token, self.next_token)
                self.next_token = scores.argmax(-1, keepdim=True)

    def sync(self) -> None:
        _sync(self.case.device)


class PeerRunner:
    """What every foreign peer's runner shares (the authors' code, x-transformers): the case's
    lengths and batch, the same token ids as ours, the FLOPs of our formula, autocast for bf16,
    their own Adam (lr 2.5e-4) in training; memory that starts empty and fills in
    :attr:`fill_steps` steps. A subclass builds ``self.model`` and defines ``step``."""

    def __init__(self, case: Case, *, bf16: bool, who: str) -> None:
        self.case = case
        bp = bench_preset(case.preset)
        self.config = bp.config
        batch, tlen, mlen = _lengths(bp, case.mode)
        if case.batch is not None:
            batch = case.batch
        if case.mode == "gen":
            raise ValueError(f"{who} is timed in train and eval modes only")
        self.tokens_per_step, self.repeat = batch * tlen, 1
        self.flops_per_token = model_flops_per_token(self.config, tlen, mlen, batch) * (
            3 if case.mode == "train" else 1
        )
        dtype = torch.bfloat16 if bf16 else DTYPES[case.dtype]
        device_type = torch.device(case.device).type
        self.autocast = (
            torch.autocast(device_type, dtype=dtype) if dtype != torch.float32 else nullcontext()
        )
        self.data = bench_tokens(case, self.config.vocab_size, batch, tlen).to(case.device)
        self.pos, self.tlen, self.mlen = 0, tlen, mlen
        self.fill_steps = max(1, math.ceil(mlen / tlen))
        self.last_loss = float("nan")

    def _optimizer(self, model) -> torch.optim.Optimizer | None:
        """Adam as the peers' own training code builds it (``torch.optim.Adam``), in training."""
        if self.case.mode != "train":
            return None
        return torch.optim.Adam(model.parameters(), lr=2.5e-4)

    def _segment(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, self.pos = next_segment(self.data, self.pos, self.tlen)  # [B, T] each
        return x, y

    def sync(self) -> None:
        _sync(self.case.device)
