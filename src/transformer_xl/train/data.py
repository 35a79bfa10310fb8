"""What the trainer needs from the data: a prepared folder (``txl prepare``) behind a small
interface, and the built-in corpus of the main job.

The built-in corpus ``builtin:cpython-docs`` is the English text that ships inside CPython
(``pydoc_data.topics``: the reference manual's sections that ``help()`` shows, about 450 KB),
one token per UTF-8 byte. Sections are kept whole and dealt out in sorted order so that
``valid`` and ``test`` each get about 5% of the bytes, spread over the whole manual
(:func:`deal_sections`): the held-out splits are other sections of the same manual. It is
prepared into ``RUN/data`` on first use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from transformer_xl.data import PreparedDataset, Vocab, eval_stream, load_prepared
from transformer_xl.data import train_stream as data_train_stream
from transformer_xl.data.prepared import PreparedWriter, is_prepared
from transformer_xl.run.folder import RunFolder
from transformer_xl.train.distributed import DistEnv, barrier

BUILTIN = "builtin:cpython-docs"


def builtin_sections() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        raise ValueError(
            f"{BUILTIN}: this Python has no pydoc_data.topics; prepare a corpus with "
            "`txl prepare` and pass --data DIR"
        ) from None
    return [topics[k] for k in sorted(topics)]


def deal_sections(sections: list[str], shares: dict[str, float]) -> dict[str, list[str]]:
    """Give each whole section, in order, to the split furthest below its share of the bytes
    dealt so far: held-out sections spread over the whole corpus, in the wanted proportions."""
    parts: dict[str, list[str]] = {name: [] for name in shares}
    size = dict.fromkeys(shares, 0)
    dealt = 0
    for text in sections:
        n = len(text.encode("utf-8"))
        dealt += n
        name = max(shares, key=lambda k: shares[k] * dealt - size[k])
        parts[name].append(text)
        size[name] += n
    return parts


def prepare_texts(out: Path, texts: dict[str, str], *, dataset: str, source: str = "") -> Path:
    """Write ``{split: text}`` as a prepared byte-level dataset folder (id = byte value)."""
    vocab = Vocab([str(b) for b in range(256)], "byte")
    splits = {}
    with PreparedWriter(out, overwrite=True) as w:
        for name, text in texts.items():
            sw = w.split(name, "uint8")
            sw.write(np.frombuffer(text.encode("utf-8"), dtype=np.uint8))
            splits[name] = sw.close()
        meta = {
            "dataset": dataset,
            "unit": "byte",
            "dtype": "uint8",
            "splits": splits,
            "source": source,
        }
        w.commit(meta, vocab)
    return out


def prepare_builtin(out: Path) -> Path:
    """Write the built-in corpus (90/5/5 % of its bytes, whole sections) at ``out``."""
    parts = deal_sections(builtin_sections(), {"train": 0.9, "valid": 0.05, "test": 0.05})
    texts = {name: "\n\n".join(p) for name, p in parts.items()}
    return prepare_texts(
        out,
        texts,
        dataset="cpython-docs",
        source="pydoc_data.topics (CPython's bundled reference manual topics)",
    )


class TrainingData:
    """A prepared dataset as the trainer sees it."""

    def __init__(self, dataset: PreparedDataset) -> None:
        self.dataset = dataset
        self.tokenizer = dataset.tokenizer
        self.vocab_size = len(dataset.vocab)
        self.bits = self.tokenizer.unit in ("byte", "char")
        self.tokenizer_dir = dataset.path

    def check_ids(self, splits=None) -> None:
        """Refuse a split holding token ids >= the vocabulary size (before any step runs):
        :meth:`PreparedDataset.split` checks each split once, naming the file, as it opens it."""
        for name in self.dataset.splits if splits is None else splits:
            self.dataset.split(name)

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {self.dataset.num_tokens(k):,}" for k in self.dataset.splits)
        return f"{self.dataset.path} ({self.tokenizer.unit}s, vocab {self.vocab_size:,}; {sizes})"

    def has_split(self, name: str) -> bool:
        return name in self.dataset.splits and self.dataset.num_tokens(name) > 1

    def train_stream(
        self, *, batch_size: int, tgt_len: int, ext_len: int, rank: int, world_size: int, seed: int
    ) -> ResumableStream:
        s = data_train_stream(
            self.dataset,
            batch_size,
            tgt_len,
            ext_len=ext_len,
            rank=rank,
            world_size=world_size,
            seed=seed,
        )
        return ResumableStream(s)

    def eval_batches(
        self, split: str, *, batch_size: int, tgt_len: int, rank: int, world_size: int
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        if not self.has_split(split):
            raise ValueError(f"{self.dataset.path}: split {split!r} is missing or empty")
        stream = eval_stream(
            self.dataset, split, batch_size, tgt_len, rank=rank, world_size=world_size
        )
        return ((seg.input_ids, seg.labels, seg.loss_mask) for seg in stream)

    def sample_prompt(self, n: int = 64) -> list[int]:
        split = "test" if self.has_split("test") else "train"
        return [int(i) for i in self.dataset.split(split)[:n]]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def unigram_bits(self, split: str) -> float:
        """Bits per token of an add-one unigram model of ``train`` on ``split``'s labels."""
        counts = np.bincount(np.asarray(self.dataset.split("train")), minlength=self.vocab_size)
        logp = np.log2((counts + 1.0) / (counts.sum() + self.vocab_size))
        labels = np.asarray(self.dataset.split(split))[1:]
        return float(-logp[labels].mean()) if len(labels) else math.nan


class ResumableStream:
    """The training stream as an endless iterator of segments with a resumable position."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self._it: Iterator | None = None

    def __next__(self):
        if self._it is None:
            self._it = self.stream.forever()
        return next(self._it)

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)
        self._it = None


def open_data(spec: str | None, run_dir: Path, *, env: DistEnv) -> TrainingData:
    """``spec`` is a prepared folder or :data:`BUILTIN` (prepared into ``run_dir/data`` by
    rank 0 on first use)."""
    if not spec:
        raise ValueError("no training data: pass --data DIR (a folder made by `txl prepare`)")
    if spec == BUILTIN:
        path = RunFolder(run_dir).data
        if env.is_main and not is_prepared(path):
            prepare_builtin(path)
        barrier(env)
    elif spec.startswith("builtin:"):
        raise ValueError(f"unknown built-in corpus {spec!r}: the one built in is {BUILTIN!r}")
    else:
        path = Path(spec)
    return TrainingData(load_prepared(path))
