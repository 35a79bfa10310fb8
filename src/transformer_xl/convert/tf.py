"""The authors' TensorFlow checkpoints (``tf/model.py``) -> this project's model.

The architecture is read from the variables' shapes (the TF checkpoint stores no config):
layers from ``layer_K``, ``d_model`` and ``3 * H * Dh`` from the QKV kernel, ``H`` and ``Dh`` (and
``untie_r``) from ``r_w_bias``, the clusters and ``div_val`` from the embedding tables, and
``proj_same_dim`` / tied projections from which projection variables exist. ``corpus-info.json``
(vocabulary size, cutoffs) is cross-checked.

Facts of the TF code the map relies on: kernels are ``[in, out]`` (transposed here);
``proj_W`` / ``proj`` are ``[d_i, d_model]`` and used as ``x @ proj_W`` on the input side and
``h @ proj^T`` on the output side, so both transpose to our ``[d_model, d_i]``; output word
weights are always the embedding tables; with ``div_val == 1`` the softmax bias is stored per
cluster (``cutoff_i/b``) and joined here; tail cluster ``i``'s head logit is column
``cutoffs[0] + i - 1`` (as ours); layer norms are ``tf.contrib.layers.layer_norm`` with epsilon
1e-12; ``same_length`` lets a query see ``mem_len + 1`` keys (``window_keys="mem_len+1"``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.keymap import Rule, assemble, concat, transpose
from transformer_xl.convert.tf_bundle import TFCheckpoint
from transformer_xl.schema import read_json
from transformer_xl.segment import SegmentSettings

P = "transformer/"
TF_LAYER = {  # ours (under layers.{k}.) <- TF (under transformer/layer_{k}/), transposed?
    "attn.qkv.weight": ("rel_attn/qkv/kernel", True),
    "attn.r_net.weight": ("rel_attn/r/kernel", True),
    "attn.o.weight": ("rel_attn/o/kernel", True),
    "attn.ln.weight": ("rel_attn/LayerNorm/gamma", False),
    "attn.ln.bias": ("rel_attn/LayerNorm/beta", False),
    "ff.fc1.weight": ("ff/layer_1/kernel", True),
    "ff.fc1.bias": ("ff/layer_1/bias", False),
    "ff.fc2.weight": ("ff/layer_2/kernel", True),
    "ff.fc2.bias": ("ff/layer_2/bias", False),
    "ff.ln.weight": ("ff/LayerNorm/gamma", False),
    "ff.ln.bias": ("ff/LayerNorm/beta", False),
}
# optimizer state and bookkeeping the released files also hold
SKIPPED = re.compile(r"(/Adam(_\d+)?$)|(^global_step$)|(^beta[12]_power(_\d+)?$)")
TF_LAYER_NORM_EPS = 1e-12  # tf.contrib.layers.layer_norm


def is_skipped(name: str) -> bool:
    """Adam slots, ``global_step`` and the Adam power accumulators: not model weights."""
    return bool(SKIPPED.search(name))


def _shape(shapes: Mapping[str, tuple[int, ...]], name: str, source: str) -> tuple[int, ...]:
    if name not in shapes:
        raise ValueError(f"{source}: variable {name!r} not found; not a Transformer-XL checkpoint?")
    return tuple(shapes[name])


def infer_config(
    shapes: Mapping[str, tuple[int, ...]],
    corpus_info: Mapping[str, Any] | None = None,
    source: str = "TF checkpoint",
) -> TransformerXLConfig:
    """The model config from the TF variable shapes (``corpus_info`` cross-checked)."""
    layers = _layer_sizes(shapes, source)
    embed = _embedding_sizes(shapes, layers["d_model"], source)
    if corpus_info is not None:
        _check_corpus_info(corpus_info, embed["vocab_size"], list(embed["cutoffs"]))
    cfg = TransformerXLConfig(
        **layers,
        **embed,
        tie_weight=True,  # TF's softmax always reads the embedding tables
        layer_norm_eps=TF_LAYER_NORM_EPS,
        segment=SegmentSettings(window_keys="mem_len+1"),
    )
    return cfg.replace(tie_projs=_tie_projs(shapes, cfg))


def _layer_sizes(shapes: Mapping[str, tuple[int, ...]], source: str) -> dict[str, Any]:
    """``n_layer``, ``n_head``, ``d_model``, ``d_head``, ``d_inner``, ``untie_r`` from the
    layers' variables and the attention biases."""
    layers = sorted({int(m.group(1)) for n in shapes if (m := re.match(rf"{P}layer_(\d+)/", n))})
    if not layers:
        raise ValueError(f"{source}: no '{P}layer_K/' variables; not a Transformer-XL checkpoint")
    if layers != list(range(len(layers))):
        raise ValueError(f"{source}: layer numbers {layers} are not 0..{len(layers) - 1}")
    d_model, qkv = _shape(shapes, f"{P}layer_0/rel_attn/qkv/kernel", source)
    bias = _shape(shapes, f"{P}r_w_bias", source)
    if len(bias) not in (2, 3):
        got = list(bias)
        raise ValueError(f"{source}: r_w_bias has shape {got}, expected [H, Dh] or [L, H, Dh]")
    n_head, d_head = bias[-2:]
    if qkv != 3 * n_head * d_head:
        raise ValueError(
            f"{source}: qkv kernel width {qkv} != 3 * n_head * d_head = 3 * {n_head} * {d_head}"
        )
    d_inner = _shape(shapes, f"{P}layer_0/ff/layer_1/kernel", source)[1]
    return dict(n_layer=len(layers), n_head=n_head, d_model=d_model, d_head=d_head,
                d_inner=d_inner, untie_r=len(bias) == 3)  # fmt: skip


def _embedding_sizes(
    shapes: Mapping[str, tuple[int, ...]], d_model: int, source: str
) -> dict[str, Any]:
    """``vocab_size``, ``d_embed``, ``cutoffs``, ``div_val``, ``proj_same_dim`` from the
    embedding tables (one table, or one per cluster) and the softmax biases."""
    if f"{P}adaptive_embed/lookup_table" in shapes:
        div_val, proj_same_dim = 1, True
        vocab_size, d_embed = _shape(shapes, f"{P}adaptive_embed/lookup_table", source)
        bias_name = f"{P}adaptive_softmax/cutoff_{{}}/b"
        n_bias = sum(1 for n in shapes if re.fullmatch(bias_name.format(r"\d+"), n))
        sizes = [_shape(shapes, bias_name.format(i), source)[0] for i in range(n_bias)]
    else:
        sizes, widths = [], []
        while f"{P}adaptive_embed/cutoff_{len(sizes)}/lookup_table" in shapes:
            n, w = shapes[f"{P}adaptive_embed/cutoff_{len(sizes)}/lookup_table"]
            sizes.append(n)
            widths.append(w)
        if not sizes:
            raise ValueError(f"{source}: no '{P}adaptive_embed/...lookup_table' variable found")
        vocab_size, d_embed = sum(sizes), widths[0]
        div_val = widths[0] // widths[1] if len(widths) > 1 else 1
        if div_val < 2 or any(w != d_embed // div_val**i for i, w in enumerate(widths)):
            raise ValueError(
                f"{source}: per-cluster embedding widths {widths} do not follow "
                "d_embed // div_val**i with div_val >= 2"
            )
        same = [i for i, w in enumerate(widths) if w == d_model]
        proj_same_dim = not same or f"{P}adaptive_embed/cutoff_{same[0]}/proj_W" in shapes
    cutoffs = [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)]
    if sizes and sum(sizes) != vocab_size:
        raise ValueError(f"{source}: softmax cluster sizes {sizes} do not add up to {vocab_size}")
    return dict(vocab_size=vocab_size, d_embed=d_embed, cutoffs=tuple(cutoffs), div_val=div_val,
                proj_same_dim=proj_same_dim)  # fmt: skip


def _check_corpus_info(info: Mapping[str, Any], vocab_size: int, cutoffs: list[int]) -> None:
    """``corpus-info.json`` must describe the checkpoint's vocabulary and clusters."""
    if info.get("vocab_size") != vocab_size:
        raise ValueError(
            f"corpus-info.json: vocab_size={info.get('vocab_size')} but the "
            f"checkpoint's embeddings hold {vocab_size} tokens"
        )
    info_cutoffs = list(info.get("cutoffs") or [])[1:-1]
    if info_cutoffs != cutoffs:
        raise ValueError(
            f"corpus-info.json: cutoffs {info_cutoffs} but the checkpoint's clusters give {cutoffs}"
        )


def _tie_projs(shapes: Mapping[str, tuple[int, ...]], cfg: TransformerXLConfig) -> tuple:
    """Which softmax clusters read the embedding's projection: those with a projection and no
    ``adaptive_softmax/cutoff_i/proj`` of their own (the single softmax always does)."""
    if not cfg.cutoffs:
        return (True,)
    return tuple(
        cfg.has_proj(0 if cfg.div_val == 1 else i)
        and f"{P}adaptive_softmax/cutoff_{i}/proj" not in shapes
        for i in range(cfg.n_clusters)
    )


def rules_from_tf(cfg: TransformerXLConfig) -> list[Rule]:
    """The key map TF -> ours for a model with config ``cfg``."""
    emb, soft = f"{P}adaptive_embed/", f"{P}adaptive_softmax/"
    rules: list[Rule] = []
    if cfg.div_val == 1:
        rules.append(Rule("word_emb.emb_layers.0.weight", (emb + "lookup_table",)))
        if cfg.has_proj(0):
            rules.append(Rule("word_emb.emb_projs.0", (emb + "proj_W",), transpose, "[d_embed, d]"))
    else:
        for i in range(cfg.n_clusters):
            src = f"{emb}cutoff_{i}/"
            rules.append(Rule(f"word_emb.emb_layers.{i}.weight", (src + "lookup_table",)))
            if cfg.has_proj(i):
                rules.append(Rule(f"word_emb.emb_projs.{i}", (src + "proj_W",), transpose))
    if not cfg.cutoffs:
        rules.append(Rule("crit.out_bias.0", (soft + "bias",)))
    elif cfg.div_val == 1:
        biases = tuple(f"{soft}cutoff_{i}/b" for i in range(cfg.n_clusters))
        rules.append(Rule("crit.out_bias.0", biases, concat, "per-cluster biases joined"))
    else:
        for i in range(cfg.n_clusters):
            rules.append(Rule(f"crit.out_bias.{i}", (f"{soft}cutoff_{i}/b",)))
    for i in range(cfg.n_clusters):
        if cfg.has_proj(0 if cfg.div_val == 1 else i) and not cfg.proj_tied(i):
            rules.append(Rule(f"crit.out_projs.{i}", (f"{soft}cutoff_{i}/proj",), transpose))
    if cfg.cutoffs:
        rules.append(Rule("crit.cluster_weight", (soft + "cutoff_0/cluster_W",)))
        rules.append(Rule("crit.cluster_bias", (soft + "cutoff_0/cluster_b",)))
    rules += [Rule(name, (P + name,)) for name in ("r_w_bias", "r_r_bias")]
    for k in range(cfg.n_layer):
        for ours, (theirs, t) in TF_LAYER.items():
            fn = transpose if t else None
            rules.append(Rule(f"layers.{k}.{ours}", (f"{P}layer_{k}/{theirs}",), fn))
    return rules


class LazyTensors(Mapping[str, Tensor]):
    """The checkpoint's tensors by name, each read (and CRC-checked) only when used."""

    def __init__(self, ckpt: TFCheckpoint) -> None:
        self.ckpt = ckpt

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.ckpt.entries:
            raise KeyError(name)
        return self.ckpt.read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ckpt.entries)

    def __len__(self) -> int:
        return len(self.ckpt.entries)


def read_corpus_info(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    info = read_json(path)  # strict (transformer_xl.schema)
    if not isinstance(info, dict) or not isinstance(info.get("vocab_size"), int):
        raise ValueError(f"{path}: expected an object with an integer 'vocab_size'")
    return info


def load_tf_checkpoint(
    prefix: str | os.PathLike,
    corpus_info: Mapping[str, Any] | None = None,
    adjust: Callable[[TransformerXLConfig], TransformerXLConfig] | None = None,
):
    """Our model with the weights of the TF checkpoint ``prefix``; returns ``(model, counts)``
    with ``counts`` the number of converted, skipped (optimizer) and total source tensors.
    ``adjust`` may change the inferred config's run settings before the model is built."""
    ckpt = TFCheckpoint(prefix)
    shapes = {n: e.shape for n, e in ckpt.entries.items() if not is_skipped(n)}
    cfg = infer_config(shapes, corpus_info, source=str(prefix))
    model, state = assemble(adjust(cfg) if adjust else cfg, rules_from_tf(cfg), LazyTensors(ckpt),
                            skip=is_skipped, source_name=str(prefix))  # fmt: skip
    skipped = sum(1 for n in ckpt.entries if is_skipped(n))
    return model, {"converted": len(state), "skipped": skipped, "source": len(ckpt.entries)}
