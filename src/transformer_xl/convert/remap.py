"""Re-encoding a prepared dataset into a converted model's vocabulary.

A released model's token ids are those of its own vocabulary file. ``txl prepare`` builds the
same vocabulary from the same corpus, but the authors built theirs with Python 2, whose
``Counter.most_common`` orders symbols of equal count by dict (hash) order, where Python 3 (and
``txl prepare``) keeps first-occurrence order: the same tokens, with different ids wherever
counts tie (many rare words of WikiText-103). :func:`remap_prepared` rewrites a prepared folder
token by token into the model's ids, so the model is evaluated on exactly the text it should be.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transformer_xl.data.prepared import PreparedWriter, id_dtype, load_prepared
from transformer_xl.data.vocab import Vocab
from transformer_xl.model_folder import VOCAB_NAME, vocab_path

CHUNK = 1 << 24  # ids rewritten per step


def id_table(source: Vocab, target: Vocab, where: str = "") -> tuple[np.ndarray, list[str]]:
    """``table[i]`` = the target id of source token ``i``; tokens the target lacks map to its
    unknown token (listed in the second result) or are an error when it has none."""
    if source.kind != target.kind:
        raise ValueError(
            f"{where}: a {source.kind} vocabulary cannot be mapped to a {target.kind} one"
        )
    table = np.empty(len(source), dtype=np.int64)
    missing = []
    for i, tok in enumerate(source.tokens):
        j = target.get(tok)
        if j is None:
            missing.append(tok)
            j = target.unk_id
        table[i] = -1 if j is None else j
    if missing and target.unk_id is None:
        raise ValueError(
            f"{where}: {len(missing)} token(s) of the data are not in the model's vocabulary, "
            f"which has no unknown token (e.g. {missing[:5]})"
        )
    return table, missing


def remap_prepared(data: str | os.PathLike, vocab: Vocab, out: str | os.PathLike) -> dict:
    """Write the prepared folder ``data`` again as ``out`` with ``vocab``'s ids; returns
    ``{"changed": ids whose number changed, "unmapped": data tokens the vocabulary lacks}``."""
    ds = load_prepared(data)
    table, missing = id_table(ds.vocab, vocab, str(data))
    dtype = id_dtype(len(vocab))
    splits = {}
    with PreparedWriter(out, progress=True) as w:
        for name in ds.splits:
            old = ds.meta["splits"][name]
            writer = w.split(name, dtype)
            ids = ds.split(name)
            for start in range(0, len(ids), CHUNK):
                writer.write(table[np.asarray(ids[start : start + CHUNK], dtype=np.int64)])
            info = {**old, **writer.close()}
            offsets = ds.sentence_offsets(name)
            if offsets is not None:  # positions do not change
                info["sentences"] = {
                    **old["sentences"],
                    **w.write_array(old["sentences"]["file"], offsets),
                }
            splits[name] = info
        keep = {
            k: v
            for k, v in ds.meta.items()
            if k not in ("format_version", "vocab_size", "vocab_sha256")
        }
        result = {
            "changed": int((table != np.arange(len(table))).sum()),
            "unmapped": len(missing),
        }
        origin = {"from_vocab_sha256": ds.meta.get("vocab_sha256"), **result}
        meta = {**keep, "dtype": dtype, "splits": splits, "remapped": origin}
        w.commit(meta, vocab)
    load_prepared(out)  # the folder reads back
    return result


def load_target_vocab(path: str | os.PathLike) -> Vocab:
    """A model folder's ``vocab.json``, or a ``vocab.json`` path."""
    path = Path(path)
    if path.is_dir():
        path = vocab_path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no {VOCAB_NAME} (convert the model with its vocabulary first)")
    return Vocab.load(path)
