"""The recurrence memory: explicit state that the caller passes in and gets back.

``Mems`` is a tuple with one tensor per layer, ``[B, M, D]``: the inputs that layer saw over the
last ``M <= mem_len`` positions (the first layer's are the embeddings). They are detached: no
gradient flows into earlier segments (the paper's stop-gradient ``SG``).
"""

from __future__ import annotations

import torch
from torch import Tensor

Mems = tuple[Tensor, ...]


def memory_length(mems: Mems | None, n_layer: int, batch: int, d_model: int) -> int:
    """Length ``M`` of ``mems`` (0 for None or empty), after checking its structure."""
    if not mems:
        return 0
    if len(mems) != n_layer:
        raise ValueError(f"mems holds {len(mems)} tensors; expected one per layer ({n_layer})")
    shape = tuple(mems[0].shape)
    for i, m in enumerate(mems):
        if m.dim() != 3 or tuple(m.shape) != shape or m.shape[0] != batch or m.shape[2] != d_model:
            raise ValueError(
                f"mems[{i}] has shape {tuple(m.shape)}; expected [batch={batch}, M, "
                f"d_model={d_model}] with the same M in every layer"
            )
    return shape[1]


def update_mems(
    mems: Mems | None, hiddens: list[Tensor], *, mem_len: int, ext_len: int = 0
) -> Mems:
    """The memory after one segment: the last ``mem_len`` positions of ``[mems; hiddens]``,
    leaving out the segment's last ``ext_len`` positions (extended context, as the authors do).
    """
    if mem_len <= 0:
        return ()
    with torch.no_grad():
        mlen = mems[0].shape[1] if mems else 0
        qlen = hiddens[0].shape[1]
        end = mlen + max(0, qlen - ext_len)
        beg = max(0, end - mem_len)
        out = []
        for i, h in enumerate(hiddens):
            cat = torch.cat([mems[i], h], dim=1) if mlen else h
            out.append(cat[:, beg:end].detach())
    return tuple(out)
