"""The streaming loop over an ONNX export, on onnxruntime and NumPy alone (no PyTorch).

A folder written by ``txl export MODEL --format onnx --out DIR`` holds ``model.onnx``,
``export.json`` and the tokenizer files. The loop keeps each stream's memory as explicit state,
a :class:`StreamState` of ``mems`` ``[L, B, M, D]`` and ``mem_length`` ``[B]``, and feeds the
graph one segment at a time::

    lm = OnnxLM("DIR")
    state = lm.start(batch=1)                       # zero memory, mem_length 0
    log_probs, state = lm.step(ids, state)          # ids [B, T] -> [B, T, V], next state
    token_lp, state = lm.score(ids, state)          # [B, N-1]: log p(ids[:, t] | ids[:, <t])
    new_ids, state = lm.greedy(prompt, 20)          # greedy continuation of one stream

``score`` cuts the ids into segments of the export's ``tgt_len`` and carries the memory, so its
log-probs are those of ``txl eval`` with the same settings; pass the returned state to the next
call to continue the stream (documents, consecutive utterances), or :meth:`StreamState.reset`
some rows to start them afresh. ``greedy`` feeds the prompt in segments, then one token at a
time; the context a token sees is the last ``mem_len`` positions plus its own segment.

Text goes through the model folder's tokenizer (:func:`load_tokenizer`, which needs the
``tokenizers`` package only for BPE): :meth:`OnnxLM.encode` and :meth:`OnnxLM.decode`.

Importing this module loads neither PyTorch nor the model code (the tests check it in a process
where ``import torch`` fails).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transformer_xl.data.tokenizer import load_tokenizer
from transformer_xl.schema import read_json

INFO_FILE = "export.json"  # written by transformer_xl.export.onnx, whose names these are
FORMAT = "transformer-xl-onnx"
INPUTS = ("input_ids", "mems", "mem_length")


@dataclass
class StreamState:
    """The memory of ``B`` streams: ``mems`` float32 ``[L, B, M, D]`` and ``mem_length`` int64
    ``[B]`` (how many of the ``M`` rows, the last ones, hold real memory)."""

    mems: np.ndarray
    mem_length: np.ndarray

    def reset(self, rows) -> StreamState:
        """A copy with the streams ``rows`` (indices) started afresh."""
        mems, length = self.mems.copy(), self.mem_length.copy()
        mems[:, rows] = 0.0
        length[rows] = 0
        return StreamState(mems, length)

    def select(self, rows) -> StreamState:
        """The streams ``rows`` (indices, repeats allowed) as a new batch: forks for beams."""
        rows = np.asarray(rows, dtype=np.int64)
        return StreamState(self.mems[:, rows].copy(), self.mem_length[rows].copy())


def read_info(folder: str | os.PathLike) -> dict[str, Any]:
    """``export.json`` of an export folder, checked for the format this loop reads."""
    path = Path(folder) / INFO_FILE
    info = read_json(path)  # strict (transformer_xl.schema); the fields are checked below
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ONNX export of this project (format {FORMAT!r})")
    if info.get("format_version") != 1:
        raise ValueError(f"{path}: format_version={info.get('format_version')!r}: expected 1")
    return info


class OnnxLM:
    """An exported model in an onnxruntime session (see the module doc)."""

    def __init__(self, folder: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.info = read_info(self.folder)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.folder / self.info["model_file"]), opts, providers=["CPUExecutionProvider"]
        )
        self.mem_len = int(self.info["mem_len"])
        self.tgt_len = int(self.info["segment"]["tgt_len"])
        self.eos_id = self.info.get("eos_id")
        self._tokenizer = None

    # ------------------------------------------------------------------ ids
    def start(self, batch: int = 1) -> StreamState:
        """Zero memory for ``batch`` new streams."""
        shape = (self.info["n_layer"], batch, self.mem_len, self.info["d_model"])
        return StreamState(np.zeros(shape, np.float32), np.zeros(batch, np.int64))

    def step(self, ids, state: StreamState) -> tuple[np.ndarray, StreamState]:
        """One segment: ``ids`` ``[B, T]`` -> log-probs ``[B, T, V]`` and the next state."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[0] != state.mem_length.shape[0] or ids.shape[1] < 1:
            raise ValueError(
                f"ids of shape {ids.shape}: expected [batch={state.mem_length.shape[0]}, T >= 1]"
            )
        vocab = int(self.info["vocab_size"])
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"token ids must lie in [0, {vocab}): found {ids.min()}..{ids.max()}")
        feed = dict(zip(INPUTS, (ids, state.mems, state.mem_length), strict=True))
        log_probs, mems, length = self.session.run(None, feed)
        return log_probs, StreamState(mems, length)

    def score(
        self, ids, state: StreamState | None = None, *, segment: int | None = None
    ) -> tuple[np.ndarray, StreamState]:
        """``[B, N-1]`` log-probs of ``ids[:, 1:]`` ``[B, N]``, each given the tokens before it
        (and the memory in ``state``), in segments of ``segment`` (default: ``tgt_len``)."""
        ids = np.asarray(ids, dtype=np.int64)
        state = self.start(ids.shape[0]) if state is None else state
        seg = segment or self.tgt_len
        parts = []
        inputs, targets = ids[:, :-1], ids[:, 1:]
        for s in range(0, inputs.shape[1], seg):
            log_probs, state = self.step(inputs[:, s : s + seg], state)
            picked = np.take_along_axis(log_probs, targets[:, s : s + seg, None], axis=2)
            parts.append(picked[:, :, 0])
        width = max(0, ids.shape[1] - 1)
        return (np.concatenate(parts, 1) if parts else np.zeros((ids.shape[0], width))), state

    def greedy(
        self,
        prompt,
        max_new_tokens: int,
        state: StreamState | None = None,
        *,
        stop_at_eos: bool = False,
    ) -> tuple[list[int], StreamState]:
        """The most likely continuation of one stream's ``prompt`` (ids, at least one)."""
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("greedy: the prompt needs at least one token")
        state = self.start(1) if state is None else state
        ids = np.asarray([prompt], dtype=np.int64)
        for s in range(0, ids.shape[1], self.tgt_len):
            log_probs, state = self.step(ids[:, s : s + self.tgt_len], state)
        out: list[int] = []
        while len(out) < max_new_tokens:
            nxt = int(log_probs[0, -1].argmax())
            out.append(nxt)
            if (stop_at_eos and nxt == self.eos_id) or len(out) == max_new_tokens:
                break
            log_probs, state = self.step([[nxt]], state)
        return out, state

    # ------------------------------------------------------------------ text
    @property
    def tokenizer(self):
        """The model folder's tokenizer, read from the export folder on first use."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.folder)
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(t) for t in ids])
