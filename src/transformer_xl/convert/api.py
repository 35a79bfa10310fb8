"""Converting whole checkpoints: read a foreign model (and its vocabulary), write a model folder.

``convert_checkpoint("tf" | "original" | "hf", SRC, OUT)`` writes OUT as ``config.json`` +
``model.safetensors`` (+ ``vocab.json``); ``export_hf(SRC, OUT)`` writes one of our model folders
as an HF ``TransfoXL`` folder. Every folder is built beside OUT and renamed into place, so OUT is
complete or absent. When the architecture is one of the paper's presets for the dataset, the
saved run defaults (``tgt_len``, ``mem_len``, ``clamp_len``, ``same_length``) are the paper's
evaluation settings.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.hf import HF_VOCAB_FILES, hf_state_from_ours, load_hf_folder
from transformer_xl.convert.hf_export import write_hf5_folder
from transformer_xl.convert.hf_files import HF_BIN, HF_CONFIG, HF_SAFETENSORS
from transformer_xl.convert.hf_tokenizer import write_hf_tokenizer
from transformer_xl.convert.nvidia import load_nvidia, read_nvidia
from transformer_xl.convert.original import load_original
from transformer_xl.convert.tf import load_tf_checkpoint, read_corpus_info
from transformer_xl.convert.tf_bundle import resolve_prefix
from transformer_xl.convert.vocab_files import (
    VOCAB_NAME,
    VocabInfo,
    read_vocab_pickle,
    vocab_json,
    write_vocab_json,
)
from transformer_xl.data.tokenizer import HF_TOKENIZER_NAME
from transformer_xl.data.vocab import Vocab
from transformer_xl.fileio import atomic_write_text, honour_umask, make_parent, named_error
from transformer_xl.model.saved import torch_weights
from transformer_xl.model_folder import write_model_folder
from transformer_xl.presets import TABLE, preset
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.weights import load_pretrained

SOURCES = ("tf", "original", "hf", "nvidia")
ARCH_FIELDS = ("n_layer", "d_model", "n_head", "d_head", "d_inner", "div_val", "cutoffs")
DATASET_ALIASES = {"wikitext103": "wt103", "onebillionword": "lm1b"}  # `txl prepare` names


@dataclass
class ConvertResult:
    out: Path
    config: TransformerXLConfig
    counts: dict[str, int]
    vocab: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def matching_preset(cfg: TransformerXLConfig, dataset: str | None) -> str | None:
    """The paper preset of ``dataset`` with ``cfg``'s architecture, if there is one."""
    if not dataset:
        return None
    dataset = DATASET_ALIASES.get(dataset.lower().replace("-", ""), dataset)
    for name, row in TABLE.items():
        if not name.startswith(dataset + "_") and name != dataset:
            continue
        if row.config.vocab_size == cfg.vocab_size and all(
            getattr(row.config, f) == getattr(cfg, f) for f in ARCH_FIELDS
        ):
            return name
    return None


def with_eval_settings(cfg: TransformerXLConfig, dataset: str | None, notes: list[str]):
    """``cfg`` with the paper's evaluation settings as run defaults, when a preset matches."""
    name = matching_preset(cfg, dataset)
    if name is None:
        if dataset:
            notes.append(f"architecture matches no '{dataset}' preset: run defaults kept")
        return cfg
    notes.append(f"architecture of preset '{name}': its evaluation settings are the defaults")
    row = preset(name)
    ev = row.eval
    segment = cfg.segment.replace(
        tgt_len=ev.tgt_len,
        mem_len=ev.mem_len,
        clamp_len=ev.clamp_len,
        same_length=ev.same_length,
    )  # fmt: skip (the model's window_keys kept)
    return cfg.replace(segment=segment, dropout=row.config.dropout, dropatt=row.config.dropatt)


def _check_new(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: already exists and is not an empty folder; choose a new one")


def write_model_out(out: str | os.PathLike, model, extra: Callable[[Path], None] | None) -> Path:
    """Our model folder ``out`` (which must not exist or be empty) of the PyTorch ``model``,
    through the one writer (``extra(tmp)``: the vocabulary files)."""
    out = Path(out)
    _check_new(out)
    try:
        return write_model_folder(out, model.config, torch_weights(model.state_dict()), extra=extra)
    except SafetensorError as e:  # e.g. the disk is full: the Rust writer's own error type
        raise ValueError(f"{out}: cannot write the weights ({e})") from None


def write_folder(out: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Create folder ``out`` (an HF folder) through ``fill(tmp)`` on a temporary sibling, then
    rename it into place; ``out`` must not exist or be empty. On any error nothing is left
    behind."""
    out = Path(out)
    _check_new(out)
    make_parent(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:  # name the folder asked for, not the temporary beside it
        raise named_error(e, out) from None
    try:
        honour_umask(tmp, directory=True)  # mkdtemp makes it 0700 whatever the umask
        try:
            fill(tmp)
        except SafetensorError as e:  # e.g. the disk is full: the Rust writer's own error type
            raise ValueError(f"{out}: cannot write the weights ({e})") from None
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _first_file(candidates: Sequence[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _vocab_for(
    info: VocabInfo | None, cfg: TransformerXLConfig, dataset: str | None, source: str
) -> dict[str, Any] | None:
    if info is None:
        return None
    vocab = vocab_json(info, dataset)
    if len(vocab["tokens"]) != cfg.vocab_size:
        raise ValueError(
            f"{source}: the vocabulary holds {len(vocab['tokens'])} tokens but the model has "
            f"vocab_size={cfg.vocab_size}"
        )
    return vocab


def convert_checkpoint(
    source: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    vocab_file: str | os.PathLike | None = None,
    corpus_info: str | os.PathLike | None = None,
    dataset: str | None = None,
    cutoffs: Sequence[int] | None = None,
    with_vocab: bool = True,
) -> ConvertResult:
    """Convert a ``source`` ("tf", "original", "hf", "nvidia") checkpoint at ``src`` into folder
    ``out``.

    vocab_file: the vocabulary (TF ``cache.pkl``, PyTorch ``cache.pt``, HF ``vocab.pkl``);
    found automatically in the released TF layout and in HF folders; NVIDIA's checkpoints
    hold theirs.
    corpus_info: the TF ``corpus-info.json`` (found automatically in the released layout).
    dataset: overrides the dataset named in the files (vocabulary kind, evaluation settings).
    cutoffs: for plain state dicts with ``div_val == 1``, whose shapes do not record them.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: expected one of {SOURCES}")
    src = Path(src)
    notes: list[str] = []
    auto_vocab: list[Path] = []
    cinfo = None
    if source == "tf":
        prefix = resolve_prefix(src)
        near = [src / "data", prefix.parent.parent / "data", prefix.parent]
        found = _first_file([d / "corpus-info.json" for d in near])
        info_path = Path(corpus_info) if corpus_info else found
        cinfo = read_corpus_info(info_path) if info_path else None
        if cinfo is None:
            notes.append("no corpus-info.json found: architecture read from the shapes alone")
        dataset = dataset or cinfo and cinfo.get("dataset")
        auto_vocab = [d / "cache.pkl" for d in near]
    elif source == "hf":
        if with_vocab and vocab_file is None and (src / VOCAB_NAME).is_file():
            return _convert_hf_with_vocab_json(src, out, dataset, notes)
        auto_vocab = [src / name for name in HF_VOCAB_FILES]
    elif source == "nvidia":
        ck = read_nvidia(src)
        notes += ck.notes
        dataset = dataset or ck.dataset

    info = None
    if with_vocab:
        inside = ck.vocab if source == "nvidia" and not vocab_file else None
        info = inside or _read_vocab(vocab_file, auto_vocab, source, notes)
        dataset = dataset or (info and info.dataset)

    def adjust(cfg: TransformerXLConfig) -> TransformerXLConfig:
        return with_eval_settings(cfg, dataset, notes)

    if source == "tf":
        model, counts = load_tf_checkpoint(prefix, cinfo, adjust)
    elif source == "original":
        model, counts = load_original(src, cutoffs=cutoffs, adjust=adjust)
    elif source == "nvidia":
        model, counts = load_nvidia(ck, adjust)
    else:
        model, counts = load_hf_folder(src, adjust)
    cfg = model.config
    vocab = _vocab_for(info, cfg, dataset, str(src))

    extra = (lambda tmp: write_vocab_json(tmp, vocab)) if vocab is not None else None
    return ConvertResult(write_model_out(out, model, extra), cfg, counts, vocab, notes)


def _read_vocab(
    vocab_file: str | os.PathLike | None, auto: Sequence[Path], source: str, notes: list[str]
) -> VocabInfo | None:
    """The vocabulary of ``--vocab-file``, else of the first file of ``auto`` that exists."""
    path = Path(vocab_file) if vocab_file else _first_file(auto)
    if path is None:
        notes.append(f"no vocabulary file found: no {VOCAB_NAME} written (see --vocab-file)")
        return None
    # HF's converter decoded the authors' Python 2 strings as Latin-1
    info = read_vocab_pickle(path, latin1_strings=source == "hf")
    notes += info.notes
    return info


def _convert_hf_with_vocab_json(src: Path, out, dataset, notes) -> ConvertResult:
    """``--from hf`` of a folder we exported: its ``vocab.json`` (every kind) comes back as it
    is, with ``tokenizer.json`` for bpe."""
    vocab = Vocab.load(src / VOCAB_NAME)
    # the saved run settings are the model's own: the paper's only when --dataset asks
    model, counts = load_hf_folder(
        src, (lambda cfg: with_eval_settings(cfg, dataset, notes)) if dataset else None
    )
    if len(vocab) != model.config.vocab_size:
        raise ValueError(
            f"{src / VOCAB_NAME}: {len(vocab)} tokens but the model has "
            f"vocab_size={model.config.vocab_size}"
        )

    def extra(tmp: Path) -> None:
        vocab.save(tmp / VOCAB_NAME)
        if vocab.kind == "bpe":
            shutil.copyfile(src / HF_TOKENIZER_NAME, tmp / HF_TOKENIZER_NAME)

    folder = write_model_out(out, model, extra)
    return ConvertResult(folder, model.config, counts, vocab.to_dict(), notes)


def hf_vocab_dict(vocab: dict[str, Any]) -> dict[str, Any]:
    """The attribute dict HF's ``TransfoXLTokenizer`` loads from ``vocab.pkl``."""
    tokens = vocab["tokens"]
    d: dict[str, Any] = {
        "idx2sym": list(tokens),
        "sym2idx": OrderedDict((t, i) for i, t in enumerate(tokens)),
        "special": list(vocab.get("special_tokens") or []),
        "counter": Counter(),
        "min_freq": 0,
        "max_size": None,
        "lower_case": bool((vocab.get("options") or {}).get("lower_case", False)),
        "delimiter": None,
        "vocab_file": None,
    }
    if vocab.get("unk_token") in d["sym2idx"]:
        d["unk_idx"] = d["sym2idx"][vocab["unk_token"]]
    return d


HF_FORMATS = ("transformers5", "legacy")


def export_hf(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    weights: str = "safetensors",
    hf_format: str = "transformers5",
    dataset: str | None = None,
    results: dict[str, float] | None = None,
):
    """Write our model folder ``src`` as an HF folder ``out``: ``hf_format="transformers5"``
    (this package's classes for transformers 5, see :mod:`.hf_export`) or ``"legacy"``
    (HF's ``TransfoXL`` of transformers 4.x)."""
    if hf_format not in HF_FORMATS:
        raise ValueError(f"hf_format={hf_format!r}: expected one of {HF_FORMATS}")
    if weights not in ("safetensors", "bin"):
        raise ValueError(f"weights={weights!r}: expected 'safetensors' or 'bin'")

    src = find_model_folder(src)  # a model, run or checkpoint folder or a Hub repo id
    model = load_pretrained(src)
    vocab = None
    if (src / VOCAB_NAME).is_file():
        vocab = Vocab.load(src / VOCAB_NAME)
        if len(vocab) != model.config.vocab_size:
            raise ValueError(
                f"{src / VOCAB_NAME}: {len(vocab)} tokens but the model has "
                f"vocab_size={model.config.vocab_size}"
            )
    if hf_format == "legacy":
        return _export_legacy(src, out, model, vocab, weights)
    if weights != "safetensors":
        raise ValueError("--weights bin: the transformers-5 format is safetensors only")

    n = [0]

    def fill(tmp: Path) -> None:
        n[0] = write_hf5_folder(tmp, model.config, model.state_dict(), vocab, src,
                                dataset=dataset, results=results)  # fmt: skip

    folder = write_folder(out, fill)
    counts = {"converted": n[0], "skipped": 0, "source": len(model.state_dict())}
    return ConvertResult(folder, model.config, counts, vocab and vocab.to_dict(), [])


def _export_legacy(src: Path, out, model, vocab, weights: str) -> ConvertResult:
    cfg = model.config
    hf_cfg, state = hf_state_from_ours(model)
    # HF's config has no tgt_len and no same_length window: kept for `--from hf`
    hf_cfg["txl_run_settings"] = cfg.segment.to_dict()
    if vocab is not None and vocab.eos_id is not None:
        hf_cfg["eos_token_id"] = vocab.eos_id
    notes = []
    if cfg.segment.same_length and cfg.segment.window_keys == "mem_len+1":
        notes.append(
            "HF's same_length lets a query see mem_len keys (this model's default, "
            "window_keys='mem_len+1', sees mem_len + 1): HF's scores differ slightly"
        )
    if cfg.div_val > 1 and not cfg.proj_same_dim:
        notes.append("clusters without a projection got identity projections (HF needs one)")
    if cfg.cutoffs and not hf_cfg["proj_share_all_but_first"] and any(cfg.tie_projs or ()):
        notes.append("tied projections written as untied copies (HF ties only all-but-first)")
    if cfg.sample_softmax > 0:
        notes.append("sample_softmax dropped: HF's model cannot train with it")
    if vocab is not None and vocab.kind != "word":
        notes.append(
            f"{vocab.kind} vocabulary: written as {HF_TOKENIZER_NAME} for PreTrainedTokenizerFast "
            "(HF's TransfoXLTokenizer knows only words)"
        )

    def fill(tmp: Path) -> None:
        if vocab is not None:
            _write_legacy_tokenizer(tmp, vocab, src)
        atomic_write_text(tmp / HF_CONFIG, json.dumps(hf_cfg, indent=2) + "\n")
        tensors = {k: v.contiguous() for k, v in state.items()}
        if weights == "safetensors":
            save_file(tensors, str(tmp / HF_SAFETENSORS), metadata={"format": "pt"})
            honour_umask(tmp / HF_SAFETENSORS)  # the Rust writer makes it 0600
        else:
            try:
                torch.save(tensors, tmp / HF_BIN)
            except RuntimeError as e:  # torch's zip writer reports a full disk so, not OSError
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ValueError(
                    f"{out}: cannot write pytorch_model.bin ({reason}): is the disk full?"
                ) from None

    counts = {"converted": len(state), "skipped": 0, "source": len(model.state_dict())}
    vocab_dict = vocab.to_dict() if vocab is not None else None
    return ConvertResult(write_folder(out, fill), cfg, counts, vocab_dict, notes)


def _write_legacy_tokenizer(tmp: Path, vocab, src: Path) -> None:
    """A word vocabulary as HF's ``TransfoXLTokenizer`` (``vocab.pkl``), any other kind as a
    ``tokenizer.json``; our ``vocab.json`` too, for ``--from hf``."""
    if vocab.kind != "word":
        write_hf_tokenizer(vocab, tmp, src)
    else:
        as_dict = vocab.to_dict()
        hf_vocab = hf_vocab_dict(as_dict)
        with open(tmp / "vocab.pkl", "wb") as f:
            pickle.dump(hf_vocab, f, protocol=4)
        tok = {
            "tokenizer_class": "TransfoXLTokenizer",
            "unk_token": as_dict.get("unk_token"),
            "eos_token": as_dict.get("eos_token"),
            "special": hf_vocab["special"],
        }
        atomic_write_text(tmp / "tokenizer_config.json", json.dumps(tok, indent=2) + "\n")
    vocab.save(tmp / VOCAB_NAME)
