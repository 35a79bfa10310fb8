"""The attention kernels by name (``attn_impl``), and the one choice a model makes of them.

Each entry of :data:`KERNELS` is one implementation of the attention core
``softmax(scale * (q.k + P), masked) @ v`` (``P``: the position term in key order, or none for
attn_type 2 and 3) and runs on every path of the model it can serve:

=============  ===========  ===========  ===========  ========  ==================================
name           forward,     forward,     cached-key   dropatt   notes
               gradients    no grad      step
=============  ===========  ===========  ===========  ========  ==================================
eager          yes          yes          yes          yes       the plain reference, no padding
sdpa           yes          yes          yes          yes       PyTorch SDPA, position term as a
                                                                float mask
score_attend   yes          yes          yes          yes       one autograd function (CPU's
                                                                fastest with a position term)
chunked        yes          yes          yes          yes       64 query rows at a time,
                                                                recomputed in backward
flex           CUDA only    yes          yes          no        FlexAttention, ``score_mod``
triton         yes          yes          yes          no        flash-style Triton kernel
=============  ===========  ===========  ===========  ========  ==================================

``chunked``, ``flex`` and ``triton`` compute the position term themselves from the position keys
in a segment forward (attn_type 0, no attention dropout: their ``relative`` form); elsewhere every
entry takes the position scores already in key order (its ``attend`` form). The fast entries
(all but ``eager``) compute the position scores with :func:`~transformer_xl.model.attention.
score_columns`' BLAS padding; ``eager`` computes exactly ``K + 1`` columns.

``auto`` is not a kernel but a choice per device, made by :func:`resolve_attention` when the
model is built or moved (:meth:`TransformerXLLM.set_attn_impl` changes it): SDPA everywhere, except
on CPU with a position term, where ``score_attend`` reads segments with gradients and cached keys
several tokens at a time (SDPA's CPU math path runs those in float32 with a float mask, one pass
over the scores more: ``benchmarks/profile.md``) and SDPA the rest (its flash kernel without
gradients; one token at a time the fixed cost per call decides). :meth:`AttentionChoice.describe`
says what was chosen, e.g. ``auto on cpu -> score_attend (segment forward without gradients:
sdpa; cached-key step of one token: sdpa)``; ``txl bench`` and ``txl train`` print it.

A name runs what it says or raises ``ValueError``: an unknown name or a missing package when the
model is built, a path it cannot serve (``flex`` with gradients on CPU; ``flex``/``triton`` with
attention dropout in training) when that path is taken. Nothing falls back silently.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_xl.model.kernels.chunked import chunked_attend, chunked_relative_attention
from transformer_xl.model.kernels.flex import flex_attend, flex_relative_attention
from transformer_xl.model.kernels.reference import eager_attend
from transformer_xl.model.kernels.score_attend import score_attend
from transformer_xl.model.kernels.sdpa import sdpa_attend

# the model's paths through an attention layer, in the order of AttentionChoice.by_path
PATHS = {
    "forward_grad": "segment forward with gradients",
    "forward": "segment forward without gradients",
    "step": "cached-key step of several tokens",
    "step1": "cached-key step of one token",
}
_PATH_INDEX = {p: i for i, p in enumerate(PATHS)}


def segment_path() -> str:
    """The path of a segment forward under the current grad mode."""
    return "forward_grad" if torch.is_grad_enabled() else "forward"


def step_path(qlen: int) -> str:
    """The path of a cached-key step reading ``qlen`` tokens."""
    return "step1" if qlen == 1 else "step"


def _flex_attend(q, k, v, pos_scores, mask, *, scale: float, dropout_p: float) -> Tensor:
    return flex_attend(q, k, v, pos_scores, mask, scale=scale)  # dropout_p: 0 (check())


def _triton_attend(q, k, v, pos_scores, mask, *, scale: float, dropout_p: float) -> Tensor:
    from transformer_xl.model.kernels.triton_attn import triton_attend  # imports triton

    return triton_attend(q, k, v, pos_scores, mask, scale=scale)  # dropout_p: 0 (check())


def _triton_relative(*args, **kwargs) -> Tensor:
    from transformer_xl.model.kernels.triton_attn import triton_relative_attention

    return triton_relative_attention(*args, **kwargs)


@dataclass(frozen=True)
class AttentionKernel:
    """One named implementation.

    attend: ``(q, k, v, pos_scores, mask, *, scale, dropout_p) -> out``; q ``[B, H, T, Dh]``,
    k, v ``[B, H, K, Dh]``, pos_scores ``[B, H, T, K]`` or None, mask bool ``[T, K]`` (segment)
    or ``[B, 1, T, K]`` (cached keys), True = hidden. relative: ``(cq, pq, k, v, r, mask, *,
    scale) -> out`` with the position keys ``r`` ``[H, K + 1, Dh]`` by distance, or None.
    pad_scores: compute the position scores with ``score_columns``' padding. dropatt: has
    attention dropout. backward_devices: device types with a backward pass (None: all).
    requires: a module that must be importable.
    """

    name: str
    attend: Callable[..., Tensor]
    relative: Callable[..., Tensor] | None = None
    pad_scores: bool = True
    dropatt: bool = True
    backward_devices: tuple[str, ...] | None = None
    requires: str | None = None

    def check(self, path: str, device_type: str, dropout_p: float) -> None:
        """``ValueError`` when this kernel cannot serve ``path`` on ``device_type``."""
        if dropout_p > 0 and not self.dropatt:
            raise ValueError(
                f"attn_impl {self.name!r} has no attention dropout (dropatt={dropout_p}): "
                "train with eager, sdpa, score_attend or chunked"
            )
        devices = self.backward_devices
        if path == "forward_grad" and devices is not None and device_type not in devices:
            raise ValueError(
                f"attn_impl {self.name!r} has no backward pass on {device_type} (a PyTorch "
                "limitation): use it under torch.no_grad() (evaluation, generation), or train "
                "with another"
            )


KERNELS: dict[str, AttentionKernel] = {
    k.name: k
    for k in (
        AttentionKernel("eager", eager_attend, pad_scores=False),
        AttentionKernel("sdpa", sdpa_attend),
        AttentionKernel("score_attend", score_attend),
        AttentionKernel("chunked", chunked_attend, chunked_relative_attention),
        AttentionKernel(
            "flex",
            _flex_attend,
            flex_relative_attention,
            dropatt=False,
            backward_devices=("cuda",),
            requires="torch.nn.attention.flex_attention",
        ),  # fmt: skip
        AttentionKernel(
            "triton", _triton_attend, _triton_relative, dropatt=False, requires="triton"
        ),
    )
}
ATTN_IMPLS = ("auto", *KERNELS)


@dataclass(frozen=True)
class AttentionChoice:
    """The kernel each path runs: what ``attn_impl`` resolved to for one device type."""

    requested: str
    device_type: str
    by_path: tuple[AttentionKernel, ...]  # one per PATHS entry, in its order

    def kernel(self, path: str) -> AttentionKernel:
        return self.by_path[_PATH_INDEX[path]]

    def pick(self, path: str, *, device_type: str, dropout_p: float) -> AttentionKernel:
        """The kernel for ``path``, checked that it can serve it (``ValueError`` if not)."""
        kernel = self.kernel(path)
        kernel.check(path, device_type, dropout_p)
        return kernel

    def describe(self) -> str:
        """E.g. ``sdpa``, or ``auto on cpu -> score_attend (segment forward without gradients:
        sdpa; ...)``: the kernel of a training forward, then the paths that run another."""
        main = self.by_path[0]
        others = [
            f"{text}: {k.name}"
            for text, k in zip(PATHS.values(), self.by_path, strict=True)
            if k is not main
        ]
        text = main.name + (f" ({'; '.join(others)})" if others else "")
        if self.requested == "auto":
            return f"auto on {self.device_type} -> {text}"
        return text


def auto_kernels(device_type: str, position_term: bool) -> dict[str, str]:
    """What ``auto`` runs on each path (see the module doc for why)."""
    if device_type in ("cpu", "meta") and position_term:
        return {"forward_grad": "score_attend", "forward": "sdpa", "step": "score_attend",
                "step1": "sdpa"}  # fmt: skip
    return dict.fromkeys(PATHS, "sdpa")


def resolve_attention(name: str, *, device_type: str, position_term: bool) -> AttentionChoice:
    """``attn_impl`` ``name`` for a model on ``device_type`` whose attention has a position
    term (attn_type 0, 1) or not. ``ValueError`` for an unknown name or a missing package."""
    if name == "auto":
        names = auto_kernels(device_type, position_term)
        return AttentionChoice(name, device_type, tuple(KERNELS[names[p]] for p in PATHS))
    kernel = KERNELS.get(name) if isinstance(name, str) else None
    if kernel is None:
        raise ValueError(f"attn_impl={name!r} is unknown: expected one of {', '.join(ATTN_IMPLS)}")
    if kernel.requires and importlib.util.find_spec(kernel.requires) is None:
        raise ValueError(
            f"attn_impl={name!r} needs {kernel.requires}, which this installation lacks"
            + (" (pip install triton)" if name == "triton" else " (a newer torch)")
        )
    return AttentionChoice(name, device_type, (kernel,) * len(PATHS))
