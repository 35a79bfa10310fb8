"""The segment step as an ONNX graph with a fixed-size memory (``txl export --format onnx``).

Graph ``model.onnx`` (opset :data:`OPSET`), ``L`` = ``n_layer``, ``M`` = the export's
``mem_len`` (fixed), ``D`` = ``d_model``, ``V`` = ``vocab_size``; ``B`` and ``T`` dynamic:

======================  =========================  ==============================================
``input_ids``           int64 ``[B, T]``           the segment's token ids
``mems``                float32 ``[L, B, M, D]``   each layer's input over the last ``M`` steps
``mem_length``          int64 ``[B]``              how many of the ``M`` rows hold real memory
                                                   (the last ones: rows are right-aligned)
``log_probs``           float32 ``[B, T, V]``      full log-softmax over the vocabulary (every
                                                   adaptive-softmax cluster included)
``new_mems``            float32 ``[L, B, M, D]``   the last ``M`` rows of ``[mems; segment]``
``new_mem_length``      int64 ``[B]``              ``min(mem_length + T, M)``
======================  =========================  ==============================================

A stream starts with zero ``mems`` and ``mem_length`` 0; rows ``< M - mem_length`` are hidden
from every query by a key mask, so the first segments score exactly as the PyTorch model with an
empty (then growing) memory, and a stream can be reset on its own (``mem_length[b] = 0``) while
the others of the batch go on. The key distances are those of the PyTorch model, as the real rows
sit right before the segment.

The graph is built from the model's own layers: :class:`SegmentStep` embeds, calls
:meth:`TransformerXLLM._layers` with the key mask (its one hook for this) and
:meth:`TransformerXLLM.log_probs`, with the plain ``eager`` attention. The export uses
``torch.onnx.export(..., dynamo=False)``, the TorchScript-based exporter: the dynamo exporter
(``torch.export``) fails on this graph with a dynamic ``T`` because the attention decides on Python
integers of the key length (the BLAS padding of :func:`~transformer_xl.model.attention.
score_columns`, the slice in :func:`~transformer_xl.model.attention.rel_shift`), which it guards
on symbolically. The tracer records the size arithmetic and fixes each branch at its value for the
example length; :func:`example_length` picks that length so that the fixed branches are right for
every ``T`` (padding columns are dropped by a slice that is a no-op without them), which the tests
check across the 64-column threshold.

The metadata (:func:`export_metadata`) is written twice: as the ONNX model's ``metadata_props``
(string values; lists and objects as JSON) and as ``DIR/export.json``; the tokenizer files of the
model folder (``vocab.json``, ``tokenizer.json`` for BPE) are copied beside the graph.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from transformer_xl.convert.api import write_folder
from transformer_xl.data.tokenizer import HF_TOKENIZER_NAME
from transformer_xl.data.vocab import Vocab
from transformer_xl.fileio import atomic_write_text
from transformer_xl.model.attention import score_columns
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.model_folder import VOCAB_NAME
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.segment import SegmentSettings, with_flags

MODEL_FILE = "model.onnx"
INFO_FILE = "export.json"
VOCAB_FILE = VOCAB_NAME  # the tokenizer's file, as in a model folder
FORMAT = "transformer-xl-onnx"
FORMAT_VERSION = 1
OPSET = 17
INPUTS = ("input_ids", "mems", "mem_length")
OUTPUTS = ("log_probs", "new_mems", "new_mem_length")
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"


class SegmentStep(nn.Module):
    """One segment with a fixed-size memory, on the layers of ``model`` (see the module doc)."""

    def __init__(self, model: TransformerXLLM, settings: SegmentSettings) -> None:
        super().__init__()
        self.model = model
        self.settings = settings

    def forward(self, input_ids: Tensor, mems: Tensor, mem_length: Tensor):
        # input_ids [B, T] int64, mems [L, B, M, D], mem_length [B] int64
        m = self.model
        mlen = mems.shape[2]
        rows = torch.arange(mlen, device=mems.device)  # [M]
        empty = rows[None, :] < (mlen - mem_length)[:, None]  # [B, M]: no memory there yet
        key_mask = torch.cat([empty, torch.zeros_like(input_ids, dtype=torch.bool)], 1)  # [B, K]
        h = m.word_emb(input_ids)  # [B, T, D]
        hiddens, out = m._layers(h, tuple(mems.unbind(0)), mlen, self.settings, key_mask)
        log_probs = m.log_probs(out)  # [B, T, V]
        new_mems = torch.stack(
            [torch.cat([mems[i], hid], 1)[:, -mlen:] for i, hid in enumerate(hiddens)]
        )  # [L, B, M, D]
        new_length = torch.clamp(mem_length + input_ids.shape[1], max=mlen)  # [B]
        return log_probs, new_mems, new_length


def example_length(mem_len: int) -> int:
    """The segment length to trace with: one whose key count ``K = M + T`` takes the same
    branches as every other would in effect. Below 64 distances no columns are padded (and the
    traced graph then never pads); from 64 on, a length whose :func:`score_columns` pads, so the
    traced ``rel_shift`` keeps its slice (a no-op where a later ``T`` needs no padding)."""
    for t in range(2, 64):
        k = mem_len + t
        if k + 1 < 64 or score_columns(k) > k + 1:
            return t
    raise AssertionError("a padded length exists within 16 steps")  # pragma: no cover


def export_settings(model: TransformerXLLM, changes: Mapping[str, Any] | None = None):
    """The model's default segment settings with the export's ``changes`` (segment settings by
    name, as the ``--mem-len`` / ``--tgt-len`` flags give them)."""
    s = with_flags(model.config.segment, dict(changes or {}))
    if s.mem_len < 1:
        raise ValueError(f"mem_len={s.mem_len}: the ONNX export needs a memory (mem_len >= 1)")
    if s.ext_len:
        raise ValueError(f"ext_len={s.ext_len}: the ONNX export keeps no extended context (0)")
    return s


def export_metadata(
    model: TransformerXLLM, settings: SegmentSettings, vocab: Vocab | None
) -> dict[str, Any]:
    """What a runtime needs besides the graph (``export.json`` and the ONNX properties)."""
    cfg = model.config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_file": MODEL_FILE,
        "opset": OPSET,
        "exporter": EXPORTER,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
        "vocab_size": cfg.vocab_size,
        "n_layer": cfg.n_layer,
        "d_model": cfg.d_model,
        "mem_len": settings.mem_len,
        "dtype": "float32",
        "eos_id": None if vocab is None else vocab.eos_id,
        "unk_id": None if vocab is None else vocab.unk_id,
        "tokenizer_kind": None if vocab is None else vocab.kind,
        "tokenizer_files": [] if vocab is None else _tokenizer_files(vocab),
        "segment": settings.to_dict(),
    }


def _tokenizer_files(vocab: Vocab) -> list[str]:
    return [VOCAB_FILE, HF_TOKENIZER_NAME] if vocab.kind == "bpe" else [VOCAB_FILE]


def _eager_copy(model: TransformerXLLM) -> TransformerXLLM:
    """The same weights behind the plain ``eager`` attention, in eval mode (the loaded model
    itself is not changed)."""
    with torch.device("meta"):
        eager = TransformerXLLM(model.config, attn_impl="eager")
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    eager.load_state_dict(state, strict=True, assign=True)
    return eager.eval()


def _trace_to(path: Path, step: SegmentStep, cfg, batch: int = 2) -> None:
    s = step.settings
    t = example_length(s.mem_len)
    ids = torch.zeros(batch, t, dtype=torch.long)
    try:
        mems = torch.zeros(cfg.n_layer, batch, s.mem_len, cfg.d_model)
    except (RuntimeError, MemoryError) as e:  # the allocator's refusal
        raise ValueError(
            f"--mem-len {s.mem_len:,}: the example memory [{cfg.n_layer}, {batch}, "
            f"{s.mem_len:,}, {cfg.d_model}] cannot be allocated ({str(e).strip()[-80:]}); "
            "expected a smaller memory"
        ) from None
    length = torch.zeros(batch, dtype=torch.long)
    axes = {
        "input_ids": {0: "batch", 1: "time"}, "mems": {1: "batch"}, "mem_length": {0: "batch"},
        "log_probs": {0: "batch", 1: "time"}, "new_mems": {1: "batch"},
        "new_mem_length": {0: "batch"},
    }  # fmt: skip
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns at every Python branch on a size: fixed on purpose, see the module doc
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the exporter is chosen on purpose
        torch.onnx.export(
            step, (ids, mems, length), str(path), dynamo=False, opset_version=OPSET,
            input_names=list(INPUTS), output_names=list(OUTPUTS), dynamic_axes=axes,
        )  # fmt: skip


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ValueError(
            "the ONNX export needs the onnx package: pip install 'transformer-xl[onnx]'"
        ) from None
    return onnx


def _write_properties(path: Path, meta: dict[str, Any]) -> None:
    """``meta`` as the model's ``metadata_props`` (strings as they are, the rest as JSON), and
    the outputs declared with their shapes (the tracer names the fixed axes of ``log_probs``
    and ``new_mems`` after the ops that make them)."""
    onnx = _onnx()
    # the weights stay where the exporter put them: inside, or (past protobuf's 2 GB) in
    # external-data files beside the graph, which the references kept here keep pointing to
    proto = onnx.load(str(path), load_external_data=False)
    shapes = {
        "log_probs": ("batch", "time", meta["vocab_size"]),
        "new_mems": (meta["n_layer"], "batch", meta["mem_len"], meta["d_model"]),
        "new_mem_length": ("batch",),
    }
    for out in proto.graph.output:
        for dim, size in zip(out.type.tensor_type.shape.dim, shapes[out.name], strict=True):
            if isinstance(size, int):
                dim.dim_value = size
            else:
                dim.dim_param = size
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))


def export_onnx(
    model: TransformerXLLM,
    out_dir: str | os.PathLike,
    *,
    settings: SegmentSettings,
    vocab: Vocab | None = None,
    tokenizer_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write ``model.onnx``, ``export.json`` and the tokenizer files into the existing folder
    ``out_dir``; returns the metadata."""
    _onnx()  # the package is needed for the properties: fail before the slow trace
    out = Path(out_dir)
    step = SegmentStep(_eager_copy(model), settings)
    _trace_to(out / MODEL_FILE, step, model.config)
    meta = export_metadata(model, settings, vocab)
    _write_properties(out / MODEL_FILE, meta)
    if vocab is not None:
        vocab.save(out / VOCAB_FILE)
        if vocab.kind == "bpe":
            shutil.copyfile(Path(tokenizer_dir) / HF_TOKENIZER_NAME, out / HF_TOKENIZER_NAME)
    atomic_write_text(out / INFO_FILE, json.dumps(meta, indent=2) + "\n")
    return meta


def export_model_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    changes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``txl export SRC --format onnx --out OUT``: SRC a model, run or checkpoint folder; OUT a
    new folder, complete or absent; ``changes``: see :func:`export_settings`."""
    folder = find_model_folder(src)
    model = TransformerXLLM.from_pretrained(folder, attn_impl="eager").eval()
    settings = export_settings(model, changes)
    vocab = Vocab.load(folder / VOCAB_FILE) if (folder / VOCAB_FILE).is_file() else None
    if vocab is not None and len(vocab) != model.config.vocab_size:
        raise ValueError(
            f"{folder / VOCAB_FILE}: {len(vocab)} tokens but the model has "
            f"vocab_size={model.config.vocab_size}"
        )
    if vocab is not None and vocab.kind == "bpe" and not (folder / HF_TOKENIZER_NAME).is_file():
        raise ValueError(f"{folder}: a bpe vocabulary without its {HF_TOKENIZER_NAME}")
    meta: dict[str, Any] = {}

    def fill(tmp: Path) -> None:
        meta.update(export_onnx(model, tmp, settings=settings, vocab=vocab, tokenizer_dir=folder))

    write_folder(out, fill)
    return meta
