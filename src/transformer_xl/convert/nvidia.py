"""NVIDIA DeepLearningExamples' Transformer-XL checkpoints -> this project's model.

Their ``train.py`` writes ``checkpoint_last.pt`` (and copies it to ``checkpoint_best.pt``) with
``torch.save`` of a dict: ``model_state`` (the ``MemTransformerLM`` state dict), ``model_config``
(the keyword arguments the model was built with: ``n_token``, sizes, ``cutoffs`` without the
vocabulary size, ``tie_projs``, run settings), ``args`` (the ``argparse.Namespace`` of the run:
``dataset``, ``vocab``, ``fp16``, ``amp``), ``vocab`` (the corpus's ``utils.vocabulary.Vocab``),
``amp_state``, optimizer, scheduler, random and memory states and counters. It is read here with
:mod:`transformer_xl.convert.safe_pickle` (``torch.load(weights_only=True)`` with inert stand-ins
for the namespace and the vocabulary): no code from the file runs, and any other class is
refused by name. Optimizer, scheduler, random states and the training memory are not used.

Their layout, where it differs from the authors' (:mod:`.torch_layout`): the softmax biases
are ``crit.out_layers_biases.{t}`` and, untied, its weights ``crit.out_layers_weights.{t}``;
``crit.shared_out_projs.{t}`` repeats the embedding projections (their softmax holds the list as
a sub-module) and ``crit.out_projs.{i}`` exists only where not tied; ``r_w_bias`` / ``r_r_bias``
are shared by all layers; the tail-cluster rows of ``cluster_weight`` are in reverse order.
With ``same_length`` their mask lets a query see ``mem_len + 1`` keys (``window_keys
"mem_len+1"``).

Mixed precision: with ``--fp16 --amp pytorch`` the weights are float32 and ``amp_state`` the
``GradScaler``'s; with ``--amp apex`` (opt level O2, their default) ``model_state`` holds
float16 weights (layer norms included), converted to float32 here (the float32 master copy
lives only in the optimizer and is not saved).

TorchScript: their ``eval.py --type torchscript --save_torchscript FILE`` loads a checkpoint
into ``inference/mem_transformer_jit.py``'s model and writes it with ``torch.jit.save``: an
archive whose ``data.pkl`` holds the module tree, read here with every ``__torch__`` class an
inert stand-in (the archive's program never runs). That model keeps the softmax's biases,
weights and projections and the embedding's projections in plain lists
(``crit.out_layers_biases[i]``, ``crit.out_projs[i]``, ``None`` where a cluster has none, tied
entries the embedding's own tensors), its settings as attributes; the dropout rates are compiled
into its code and read as 0. :func:`checkpoint_from_script` names its tensors as in a
checkpoint, checking that tied entries are the embedding's. Such a file has no vocabulary (pass
``--vocab-file``). BPE checkpoints (``--vocab bpe``) pickle a ``pytorch_transformers`` GPT-2
tokenizer as their vocabulary and are refused by name.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.keymap import Rule, assemble, flip
from transformer_xl.convert.safe_pickle import Record, load_torch_pickle, load_torchscript_data
from transformer_xl.convert.torch_layout import LAYER, n_tables, table_of
from transformer_xl.convert.vocab_files import VocabInfo, vocab_info
from transformer_xl.segment import SegmentSettings

CHECKPOINT_CLASSES = ("argparse.Namespace", "utils.vocabulary.Vocab")
CHECKPOINT_NAMES = ("checkpoint_best.pt", "checkpoint_last.pt")
REQUIRED = ("model_state", "model_config")
CONFIG_FIELDS = {  # ours <- their model_config key
    "vocab_size": "n_token", "n_layer": "n_layer", "n_head": "n_head", "d_model": "d_model",
    "d_head": "d_head", "d_inner": "d_inner", "dropout": "dropout", "dropatt": "dropatt",
    "tie_weight": "tie_weight", "div_val": "div_val", "pre_lnorm": "pre_lnorm",
}  # fmt: skip
SEGMENT_FIELDS = {  # our SegmentSettings field <- their model_config key
    "tgt_len": "tgt_len", "ext_len": "ext_len", "mem_len": "mem_len",
    "same_length": "same_length",
}  # fmt: skip


@dataclass
class NvidiaCheckpoint:
    """What a checkpoint holds that the conversion uses."""

    source: str
    state: dict[str, Tensor]
    model_config: dict[str, Any]
    dataset: str | None = None
    vocab: VocabInfo | None = None
    notes: list[str] = field(default_factory=list)


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or in a training folder its ``checkpoint_best.pt`` (else ``_last``)."""
    path = Path(path)
    if path.is_dir():
        found = next((path / n for n in CHECKPOINT_NAMES if (path / n).is_file()), None)
        if found is None:
            raise ValueError(f"{path}: no {' or '.join(CHECKPOINT_NAMES)} in this folder")
        return found
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint file not found")
    return path


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in z.namelist())


def read_nvidia(path: str | os.PathLike) -> NvidiaCheckpoint:
    """The parts of an NVIDIA checkpoint that the conversion needs, checked."""
    path = checkpoint_path(path)
    source = str(path)
    if _is_torchscript(path):
        return checkpoint_from_script(load_torchscript_data(path), source)
    obj = load_torch_pickle(path, CHECKPOINT_CLASSES)
    if not isinstance(obj, Mapping) or any(k not in obj for k in REQUIRED):
        found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(
            f"{source}: not an NVIDIA DeepLearningExamples checkpoint (expected a dict with "
            f"{list(REQUIRED)}, found {found})"
        )
    state, mcfg = obj["model_state"], obj["model_config"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{source}: 'model_state' is not a state dict of tensors")
    if not isinstance(mcfg, Mapping):
        raise ValueError(f"{source}: 'model_config' is a {type(mcfg).__name__}, expected a dict")
    ck = NvidiaCheckpoint(source, dict(state), dict(mcfg))
    args = obj.get("args")
    if isinstance(args, Record):
        ck.dataset = getattr(args, "dataset", None)
    if obj.get("vocab") is not None:
        ck.vocab = vocab_info(obj["vocab"], source)
    amp = getattr(args, "amp", "apex") if isinstance(args, Record) else "apex"
    _note_halves(ck, f"{amp} AMP weights")
    return ck


def _note_halves(ck: NvidiaCheckpoint, what: str) -> None:
    halves = sum(1 for t in ck.state.values() if t.dtype == torch.float16)
    if halves:
        ck.notes.append(
            f"{halves} float16 tensors ({what}): converted to float32; the sinusoid "
            "frequencies (pos_emb.inv_freq) are recomputed in float32, not read from the file"
        )


def _module_tensors(m: Record, prefix: str = "") -> dict[str, Tensor]:
    """The tensor attributes of a TorchScript module tree by dotted name (lists left out)."""
    out: dict[str, Tensor] = {}
    for name, value in m.__dict__.items():
        if isinstance(value, Tensor):
            out[prefix + name] = value
        elif isinstance(value, Record):
            out.update(_module_tensors(value, f"{prefix}{name}."))
    return out


def _listed(owner: Record, name: str, source: str) -> list:
    value = getattr(owner, name, None)
    if not isinstance(value, list):
        raise ValueError(f"{source}: the TorchScript model has no list {name!r}")
    return value


def _same(a: Tensor | None, b: Tensor | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and torch.equal(a, b)


def _script_lists(m: Record, mcfg: dict[str, Any], source: str) -> dict[str, Tensor]:
    """The list-held tensors of their TorchScript model, named as in a checkpoint: tied ones
    left out after checking that they are the embedding's."""
    emb, crit = m.word_emb, m.crit
    children = emb.emb_layers.__dict__  # a ModuleList: its modules under "0", "1", ...
    tables = [children[str(t)].weight for t in range(len(children)) if str(t) in children]
    projs = _listed(emb, "emb_projs", source)
    out: dict[str, Tensor] = {}
    if mcfg["div_val"] > 1 or mcfg["d_embed"] != mcfg["d_model"]:  # else theirs is unused
        out.update({f"word_emb.emb_projs.{t}": p for t, p in enumerate(projs)})
    for t, b in enumerate(_listed(crit, "out_layers_biases", source)):
        out[f"crit.out_layers_biases.{t}"] = b
    for t, w in enumerate(_listed(crit, "out_layers_weights", source)):
        if not mcfg["tie_weight"]:
            out[f"crit.out_layers_weights.{t}"] = w
        elif not _same(w, tables[t] if t < len(tables) else None):
            raise ValueError(f"{source}: crit.out_layers_weights[{t}] is not the embedding's")
    for i, p in enumerate(_listed(crit, "out_projs", source)):
        if p is None:
            continue
        if not mcfg["tie_projs"][i]:
            out[f"crit.out_projs.{i}"] = p
        elif not any(_same(p, q) for q in projs):
            raise ValueError(f"{source}: crit.out_projs[{i}] is tied but not the embedding's")
    return out


SCRIPT_SETTINGS = ("n_token", "n_layer", "n_head", "d_model", "d_head", "d_embed", "div_val",
                   "tie_weight", "tie_projs", "tgt_len", "ext_len", "mem_len", "same_length",
                   "clamp_len", "attn_type", "sample_softmax")  # fmt: skip


def checkpoint_from_script(m: Any, source: str) -> NvidiaCheckpoint:
    """A checkpoint's contents from their TorchScript model (see the module doc)."""
    if not isinstance(m, Record) or type(m).__name__ != "MemTransformerLM":
        found = type(m).__name__
        raise ValueError(f"{source}: a TorchScript program holding a {found}, not their model")
    missing = [k for k in SCRIPT_SETTINGS if not hasattr(m, k)]
    if missing or not hasattr(m, "crit") or not hasattr(m, "word_emb"):
        raise ValueError(f"{source}: not their TorchScript MemTransformerLM (no {missing})")
    mcfg = {k: getattr(m, k) for k in SCRIPT_SETTINGS}
    try:
        layer0 = getattr(m.layers, "0")
        mcfg.update(
            cutoffs=list(m.word_emb.cutoffs)[:-1], d_inner=layer0.pos_ff.d_inner,
            pre_lnorm=bool(layer0.dec_attn.pre_lnorm), dropout=0.0, dropatt=0.0,
        )  # fmt: skip
    except AttributeError as e:
        raise ValueError(f"{source}: not their TorchScript MemTransformerLM ({e})") from None
    state = _module_tensors(m)
    state.update(_script_lists(m, mcfg, source))
    ck = NvidiaCheckpoint(source, state, mcfg)
    ck.notes.append("a TorchScript program: dropout rates are not recorded (set to 0)")
    _note_halves(ck, "a float16 TorchScript model")
    return ck


def _field(mcfg: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in mcfg:
        raise ValueError(f"{source}: model_config has no {key!r}")
    return mcfg[key]


def config_from_nvidia(ck: NvidiaCheckpoint) -> TransformerXLConfig:
    """Our config from their ``model_config`` (validated by the config itself)."""
    mcfg, src = ck.model_config, ck.source
    attn_type = mcfg.get("attn_type", 0)
    if attn_type != 0:
        raise ValueError(f"{src}: model_config attn_type={attn_type!r}; only 0 is converted")
    if (mcfg.get("sample_softmax") or -1) > 0:
        raise ValueError(
            f"{src}: model_config sample_softmax={mcfg['sample_softmax']}: their sampled-softmax "
            "model has no evaluation softmax to convert"
        )
    fields = {ours: _field(mcfg, theirs, src) for ours, theirs in CONFIG_FIELDS.items()}
    run = {ours: _field(mcfg, theirs, src) for ours, theirs in SEGMENT_FIELDS.items()}
    d_embed = mcfg.get("d_embed")
    clamp = mcfg.get("clamp_len", -1)
    try:
        segment = SegmentSettings(
            **run, clamp_len=clamp if isinstance(clamp, int) and clamp > 0 else -1,
            window_keys="mem_len+1",
        )  # fmt: skip
        cfg = TransformerXLConfig(
            **fields,
            d_embed=None if d_embed in (None, -1) else d_embed,
            cutoffs=tuple(_field(mcfg, "cutoffs", src)),
            tie_projs=tuple(bool(t) for t in _field(mcfg, "tie_projs", src)),
            proj_same_dim=True,  # with div_val > 1 every cluster has a projection
            untie_r=False,
            segment=segment,
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{src}: model_config: {e}") from None
    return cfg.replace(tie_projs=tuple(cfg.proj_tied(i) for i in range(cfg.n_clusters)))


def rules_from_nvidia(cfg: TransformerXLConfig) -> list[Rule]:
    """The key map theirs -> ours."""
    rules: list[Rule] = []
    for t in range(n_tables(cfg)):
        rules.append(Rule(f"word_emb.emb_layers.{t}.weight", (f"word_emb.emb_layers.{t}.weight",)))
        if cfg.has_proj(t):
            rules.append(Rule(f"word_emb.emb_projs.{t}", (f"word_emb.emb_projs.{t}",)))
        rules.append(Rule(f"crit.out_bias.{t}", (f"crit.out_layers_biases.{t}",)))
        if not cfg.tie_weight:
            rules.append(Rule(f"crit.out_weight.{t}", (f"crit.out_layers_weights.{t}",)))
    for i in range(cfg.n_clusters):
        if cfg.has_proj(table_of(cfg, i)) and not cfg.proj_tied(i):
            rules.append(Rule(f"crit.out_projs.{i}", (f"crit.out_projs.{i}",)))
    if cfg.n_clusters > 1:
        note = "tail-cluster rows reversed"
        rules.append(Rule("crit.cluster_weight", ("crit.cluster_weight",), flip, note))
        rules.append(Rule("crit.cluster_bias", ("crit.cluster_bias",), flip, note))
    rules += [Rule(name, (name,)) for name in ("r_w_bias", "r_r_bias")]
    for k in range(cfg.n_layer):
        rules += [Rule(f"layers.{k}.{o}", (f"layers.{k}.{t}",)) for o, t in LAYER.items()]
    return rules


def _skip(key: str) -> bool:
    """Keys deliberately not converted: the sinusoid's frequencies (recomputed) and the
    softmax's second reference to the embedding projections."""
    return key == "pos_emb.inv_freq" or key.startswith("crit.shared_out_projs.")


def _check_shared(ck: NvidiaCheckpoint) -> None:
    """``crit.shared_out_projs.{t}`` must repeat ``word_emb.emb_projs.{t}``, or a tie is lost."""
    for key, t in ck.state.items():
        if key.startswith("crit.shared_out_projs."):
            own = ck.state.get("word_emb.emb_projs." + key.rsplit(".", 1)[1])
            if own is None or own.shape != t.shape or not torch.equal(own, t):
                raise ValueError(f"{ck.source}: {key} differs from the embedding's projection")


def load_nvidia(
    ck: NvidiaCheckpoint,
    adjust: Callable[[TransformerXLConfig], TransformerXLConfig] | None = None,
):
    """Our model from a read checkpoint; returns ``(model, counts)``."""
    cfg = config_from_nvidia(ck)
    _check_shared(ck)
    model, converted = assemble(
        adjust(cfg) if adjust else cfg, rules_from_nvidia(cfg), ck.state, skip=_skip,
        source_name=ck.source,
    )  # fmt: skip
    skipped = sum(1 for k in ck.state if _skip(k))
    return model, {"converted": len(converted), "skipped": skipped, "source": len(ck.state)}
