"""The authors' PyTorch checkpoints -> this project's model.

Their ``train.py`` saves ``model.pt`` with ``torch.save(model)``: the whole ``MemTransformerLM``
object, pickled with the classes of their ``mem_transformer.py`` and
``utils/proj_adaptive_softmax.py``. It is loaded here with ``torch.load(weights_only=True)``
and, for each class such a file legitimately holds (theirs and ``torch.nn``'s), an inert
stand-in that only keeps the attributes (see :mod:`transformer_xl.convert.safe_pickle`): no code
from the file runs, and any other global is refused by name. The config then comes from the
module attributes (``n_token``, ``cutoffs``, ``div_val``, ``tgt_len``, ``same_length``, ...), the
weights from the modules' ``_parameters``.

Plain state dicts (``torch.save(model.state_dict())``) work too: the architecture is read from
the shapes, except what shapes cannot tell (``cutoffs`` with ``div_val == 1``: pass them).

Ties are read from the tensors: an output weight or projection equal to the embedding's is tied
(in a whole-model pickle they are the same tensor). Their code always projects every cluster
when ``div_val > 1`` (``proj_same_dim=True``), shares ``r_w_bias``/``r_r_bias`` across layers,
and keeps the tail-cluster rows of ``cluster_weight`` in reverse order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.keymap import assemble
from transformer_xl.convert.safe_pickle import Record, _inert, load_torch_pickle
from transformer_xl.convert.torch_layout import rules_from_torch_layout, skip_torch_layout
from transformer_xl.segment import SegmentSettings

_THEIRS = (
    "MemTransformerLM",
    "AdaptiveEmbedding",
    "PositionalEmbedding",
    "PositionwiseFF",
    "MultiHeadAttn",
    "RelMultiHeadAttn",
    "RelPartialLearnableMultiHeadAttn",
    "RelLearnableMultiHeadAttn",
    "DecoderLayer",
    "RelLearnableDecoderLayer",
    "RelPartialLearnableDecoderLayer",
)
_TORCH_NN = (
    "linear.Linear",
    "sparse.Embedding",
    "normalization.LayerNorm",
    "dropout.Dropout",
    "activation.ReLU",
    "container.ModuleList",
    "container.ParameterList",
    "container.Sequential",
)
MODEL_CLASSES = (
    *(f"mem_transformer.{c}" for c in _THEIRS),
    "proj_adaptive_softmax.ProjectedAdaptiveLogSoftmax",
    "utils.proj_adaptive_softmax.ProjectedAdaptiveLogSoftmax",
    "log_uniform_sampler.LogUniformSampler",
    "utils.log_uniform_sampler.LogUniformSampler",
    *(f"torch.nn.modules.{c}" for c in _TORCH_NN),
    "torch.nn.parallel.data_parallel.DataParallel",
)
# PyTorch 0.4 pickled each module's backend as a call to this function; it is not needed
MODEL_FUNCTIONS = {"torch.nn.backends.thnn._get_thnn_function_backend": _inert}


def read_original(path: str | os.PathLike) -> Any:
    """The object in an authors' checkpoint: a :class:`Record` tree or a state dict."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint file not found")
    return load_torch_pickle(path, MODEL_CLASSES, MODEL_FUNCTIONS)


def module_state(m: Record, prefix: str = "") -> dict[str, Tensor]:
    """A state dict from a pickled module tree (parameters and buffers, by dotted name)."""
    out: dict[str, Tensor] = {}
    for table in ("_parameters", "_buffers"):
        for name, t in (getattr(m, table, None) or {}).items():
            if t is not None:
                out[prefix + name] = t
    for name, sub in (getattr(m, "_modules", None) or {}).items():
        if sub is not None:
            out.update(module_state(sub, f"{prefix}{name}."))
    return out


def _sub(m: Record, *path: str) -> Record:
    for name in path:
        m = m._modules[name]
    return m


def _class_name(obj: Any) -> str:
    return type(obj).__name__ if isinstance(obj, Record) else ""


def _unwrap(obj: Any, source: str) -> Any:
    """The model (or state dict) inside DataParallel or a ``{"model": ...}`` dict."""
    while True:
        if _class_name(obj) == "DataParallel":
            obj = obj._modules["module"]
        elif isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
            keys = [
                k for k in ("model", "model_state_dict", "state_dict", "model_state") if k in obj
            ]
            if not keys:
                raise ValueError(
                    f"{source}: a dict without tensors or a 'model'/'state_dict' entry "
                    f"(keys: {sorted(map(str, obj))[:10]})"
                )
            obj = obj[keys[0]]
        else:
            return obj


def _equal(a: Tensor | None, b: Tensor | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and torch.equal(a, b)


def _ties(state: Mapping[str, Tensor], div_val: int, n_clusters: int) -> tuple[bool, list[bool]]:
    """(tie_weight, tie_projs) from which output tensors equal the embedding's."""
    tables = 1 if div_val == 1 else n_clusters
    out_w = [state.get(f"crit.out_layers.{t}.weight") for t in range(tables)]
    tie_weight = all(
        w is None or _equal(w, state.get(f"word_emb.emb_layers.{t}.weight"))
        for t, w in enumerate(out_w)
    )
    tie_projs = [
        _equal(state.get(f"crit.out_projs.{i}"), state.get(f"word_emb.emb_projs.{t}"))
        for i, t in enumerate([0] * n_clusters if div_val == 1 else range(n_clusters))
    ]
    return tie_weight, tie_projs


def _arch_from_shapes(
    state: Mapping[str, Tensor], cutoffs: Sequence[int] | None, source: str
) -> dict[str, Any]:
    """Architecture fields readable from a state dict's shapes."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ValueError(f"{source}: tensor {key!r} not found; not an authors' Transformer-XL?")
        return tuple(state[key].shape)

    layers = {int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    if not layers:
        raise ValueError(f"{source}: no 'layers.K.' tensors; not an authors' Transformer-XL state")
    three_hd, d_model = shape("layers.0.dec_attn.qkv_net.weight")
    n_head, d_head = shape("r_w_bias")[-2:]
    n_tab = sum(1 for k in state if re.fullmatch(r"word_emb\.emb_layers\.\d+\.weight", k))
    sizes = [shape(f"word_emb.emb_layers.{i}.weight") for i in range(n_tab)]
    d_embed = sizes[0][1]
    n_clusters = shape("crit.cluster_weight")[0] + 1 if "crit.cluster_weight" in state else 1
    if n_tab > 1:
        div_val = sizes[0][1] // sizes[1][1]
        found = [sum(n for n, _ in sizes[: i + 1]) for i in range(n_tab - 1)]
        if cutoffs is not None and list(cutoffs) != found:
            raise ValueError(f"{source}: --cutoffs {list(cutoffs)} but the tables give {found}")
        cutoffs = found
    else:
        div_val = 1
        if n_clusters > 1 and cutoffs is None:
            raise ValueError(
                f"{source}: a state dict with div_val 1 and {n_clusters} softmax clusters does not "
                "record the cutoffs; pass them (e.g. --cutoffs 20000,40000,200000)"
            )
        cutoffs = list(cutoffs or [])
        if len(cutoffs) != n_clusters - 1:
            raise ValueError(
                f"{source}: {len(cutoffs)} cutoffs given but the softmax has {n_clusters} clusters"
            )
    return dict(
        vocab_size=sum(n for n, _ in sizes),
        n_layer=len(layers),
        n_head=n_head,
        d_model=d_model,
        d_head=d_head,
        d_inner=shape("layers.0.pos_ff.CoreNet.0.weight")[0],
        d_embed=d_embed,
        cutoffs=tuple(cutoffs),
        div_val=div_val,
    )


def _run_from_record(m: Record) -> dict[str, Any]:
    """Settings the pickled model carries beyond the shapes (config fields)."""
    attn = _sub(m, "layers", "0", "dec_attn")
    segment = dict(
        same_length=bool(m.same_length),
        clamp_len=int(m.clamp_len) if int(m.clamp_len) > 0 else -1,
        window_keys="mem_len",  # the authors' PyTorch same-length rule
    )
    for name in ("tgt_len", "mem_len", "ext_len"):
        value = getattr(m, name, None)
        if isinstance(value, int) and value >= (1 if name == "tgt_len" else 0):
            segment[name] = value
    run = dict(
        pre_lnorm=bool(attn.pre_lnorm),
        dropout=float(_sub(m, "drop").p),
        dropatt=float(_sub(attn, "dropatt").p),
        layer_norm_eps=float(_sub(attn, "layer_norm").eps),
        segment=SegmentSettings(**segment),
    )
    sample = int(getattr(m, "sample_softmax", -1))
    if sample > 0 and "out_layer" in m._modules:
        run["sample_softmax"] = sample
    return run


def config_from_original(
    obj: Any, state: Mapping[str, Tensor], *, cutoffs: Sequence[int] | None = None, source: str = ""
) -> TransformerXLConfig:
    """Our config for an authors' model (``obj`` a pickled model, or the state dict itself)."""
    run: dict[str, Any] = {}
    if isinstance(obj, Record):
        if _class_name(obj) != "MemTransformerLM":
            raise ValueError(f"{source}: holds a {_class_name(obj)}, expected a MemTransformerLM")
        if getattr(obj, "attn_type", 0) != 0:
            raise ValueError(
                f"{source}: attn_type={obj.attn_type}; only the paper's attention (0) is converted"
            )
        if "crit" in obj._modules:
            cutoffs = list(_sub(obj, "crit").cutoffs)[:-1]  # theirs end with n_token
        run = _run_from_record(obj)
    arch = _arch_from_shapes(state, cutoffs, source)
    n_clusters = len(arch["cutoffs"]) + 1
    tie_weight, tie_projs = _ties(state, arch["div_val"], n_clusters)
    if "out_layer.weight" in state:  # sampled softmax: their own untied output layer
        tie_weight = False
    cfg = TransformerXLConfig(
        **arch,
        tie_weight=tie_weight,
        tie_projs=tuple(tie_projs),
        proj_same_dim=True,
        untie_r=False,
        **{"segment": SegmentSettings(window_keys="mem_len"), **run},
    )
    proj_tied = [cfg.proj_tied(i) for i in range(n_clusters)]
    return cfg.replace(tie_projs=tuple(proj_tied))


def load_original(
    path: str | os.PathLike,
    *,
    cutoffs: Sequence[int] | None = None,
    adjust: Callable[[TransformerXLConfig], TransformerXLConfig] | None = None,
):
    """Our model from an authors' ``model.pt`` or state dict; returns ``(model, counts)``.
    ``adjust`` may change the config's run settings before the model is built."""
    source = str(path)
    obj = _unwrap(read_original(path), source)
    if isinstance(obj, Record):
        state = module_state(obj)
    elif isinstance(obj, Mapping):
        state = dict(obj)
    else:
        raise ValueError(f"{source}: holds a {type(obj).__name__}, expected a model or state dict")
    cfg = config_from_original(obj, state, cutoffs=cutoffs, source=source)
    output_layer = "out_layer.weight" in state
    rules = rules_from_torch_layout(cfg, body="", reversed_clusters=True, output_layer=output_layer)
    skip = skip_torch_layout(cfg)
    model, converted = assemble(adjust(cfg) if adjust else cfg, rules, state, skip=skip,
                                source_name=source)  # fmt: skip
    return model, {
        "converted": len(converted),
        "skipped": sum(1 for k in state if skip(k)),
        "source": len(state),
    }
