"""The model configuration: a frozen, validated dataclass, saved as ``config.json``.

Architecture fields decide the parameters. The one other field, ``segment`` (a
:class:`~transformer_xl.segment.SegmentSettings`), holds the default run settings: every call of
the model can pass other settings, and nothing ever writes them back onto a loaded model.

``config.json`` (``format_version`` 2) nests them: ``{"vocab_size": ..., "segment": {"tgt_len":
..., "mem_len": ...}}``. Files of earlier versions (``format_version`` 1) hold them as flat fields
(``tgt_len``, ``mem_len``, ``ext_len``, ``clamp_len``, ``same_length``, and ``window_keys`` or the
older ``same_length_keys``): :meth:`TransformerXLConfig.from_dict` reads both layouts.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformer_xl.fileio import atomic_write_text
from transformer_xl.schema import InputError, build, constructor_error, loads_json, read_text
from transformer_xl.segment import FIELDS as SEGMENT_FIELDS
from transformer_xl.segment import SegmentSettings

ATTN_TYPES = {
    0: "Transformer-XL relative attention (sinusoid R, biases u and v)",
    1: "Shaw et al. learnable relative embeddings",
    2: "vanilla absolute sinusoid positions added at the input",
    3: "Al-Rfou et al. learnable absolute positions, per layer",
}
INITS = ("normal", "uniform")


MAX_PARAMETERS = 10**11  # 400 GB of fp32 weights: a mistyped size, not a model
FORMAT_VERSION = 2  # 1: the segment settings as flat fields (still read); 2: nested as "segment"
# The flat fields of format_version 1 that are the segment settings today.
FLAT_SEGMENT_FIELDS = (*SEGMENT_FIELDS, "same_length_keys")


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"TransformerXLConfig.{name}={value!r} is invalid: expected {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _nest_segment(d: dict[str, Any], source: str) -> dict[str, Any]:
    """Fields of a ``config.json`` of either layout -> constructor arguments: the flat segment
    fields of ``format_version`` 1 (or the nested ``segment`` object of 2) become one
    :class:`SegmentSettings`. The one place that knows the old layout."""
    d = dict(d)
    flat = {k: d.pop(k) for k in FLAT_SEGMENT_FIELDS if k in d}
    if "segment" in d and flat:
        raise ValueError(
            f"{source}: both a 'segment' object and flat segment fields {sorted(flat)} "
            "(give the settings once, inside 'segment')"
        )
    nested = d.pop("segment", flat)
    d["segment"] = SegmentSettings.from_dict(nested, source=f"{source} segment")
    return d


@dataclass(frozen=True)
class TransformerXLConfig:
    """Architecture of a Transformer-XL language model plus default run settings.

    Attributes:
        vocab_size: number of token ids the model reads and predicts.
        n_layer: number of decoder layers.
        n_head: attention heads per layer.
        d_model: width of the residual stream (the paper's d).
        d_head: width of one attention head; ``n_head * d_head`` need not equal ``d_model``.
        d_inner: hidden width of the position-wise feed-forward network.
        d_embed: width of the head cluster's word embedding; ``None`` means ``d_model``. When it
            differs from ``d_model`` a projection maps embeddings to ``d_model``.
        cutoffs: ascending token-id boundaries of the adaptive input/softmax clusters, without the
            vocabulary size (``()`` = one cluster: a plain embedding and softmax).
        div_val: cluster ``i`` embeds in ``d_embed // div_val**i`` dimensions (1 = all equal).
        tie_weight: share the output word weights with the input embedding tables.
        tie_projs: per cluster (``len(cutoffs) + 1`` flags), share the output projection with the
            input projection; ``None`` = untied everywhere.
        proj_same_dim: with ``div_val > 1``, also give a cluster whose width already equals
            ``d_model`` a projection (the authors' PyTorch code always does; their TF code makes
            it a flag, off for One Billion Word).
        untie_r: one pair of global biases u, v (``r_w_bias``, ``r_r_bias``) per layer instead of
            one pair shared by all layers.
        pre_lnorm: layer norm before each sub-layer (pre-LN) instead of after (the paper: after).
        dropout: dropout on embeddings, positions, sub-layer outputs and the final hidden state.
        dropatt: dropout on attention probabilities.
        attn_type: 0 Transformer-XL, 1 Shaw et al., 2 vanilla absolute sinusoid, 3 Al-Rfou et al.
        sample_softmax: if > 0, training uses a sampled softmax with this many log-uniform
            negative samples (needs no cutoffs and a frequency-ordered vocabulary); evaluation
            always uses the full softmax. -1 = off.
        init: weight initialisation, ``"normal"`` (std ``init_std``) or ``"uniform"``
            (``+-init_range``), as in the authors' code.
        init_range: bound of the uniform initialisation.
        init_std: standard deviation of the normal initialisation (also of layer-norm gains
            around 1, as in the authors' code).
        proj_init_std: standard deviation of the adaptive embedding/softmax projections.
        layer_norm_eps: epsilon of every layer norm.
        segment: the default run settings (:class:`~transformer_xl.segment.SegmentSettings`:
            ``tgt_len``, ``mem_len``, ``ext_len``, ``clamp_len``, ``same_length``,
            ``window_keys``); every call may pass others.
    """

    vocab_size: int
    n_layer: int = 16
    n_head: int = 10
    d_model: int = 410
    d_head: int = 41
    d_inner: int = 2100
    d_embed: int | None = None
    cutoffs: tuple[int, ...] = ()
    div_val: int = 1
    tie_weight: bool = True
    tie_projs: tuple[bool, ...] | None = None
    proj_same_dim: bool = True
    untie_r: bool = False
    pre_lnorm: bool = False
    dropout: float = 0.1
    dropatt: float = 0.0
    attn_type: int = 0
    sample_softmax: int = -1
    init: str = "normal"
    init_range: float = 0.1
    init_std: float = 0.02
    proj_init_std: float = 0.01
    layer_norm_eps: float = 1e-5
    segment: SegmentSettings = SegmentSettings()

    def __post_init__(self) -> None:
        # normalise sequence fields so that JSON lists and tuples compare equal
        for name in ("cutoffs", "tie_projs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, (str, bytes)) or not hasattr(v, "__iter__")):
                what = "integers" if name == "cutoffs" else "booleans, one per cluster, or null"
                _fail(name, v, f"a list of {what}")
        if not all(_is_int(c) for c in self.cutoffs):
            _fail("cutoffs", self.cutoffs, "a list of integers")
        object.__setattr__(self, "cutoffs", tuple(int(c) for c in self.cutoffs))
        if self.tie_projs is not None:
            if not all(isinstance(t, bool) or t in (0, 1) for t in self.tie_projs):
                _fail("tie_projs", self.tie_projs, "a list of booleans, one per cluster, or null")
            object.__setattr__(self, "tie_projs", tuple(bool(t) for t in self.tie_projs))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        self._validate_types()
        self._validate_values()

    def _validate_types(self) -> None:
        """Sizes, the adaptive layout and every field's type (before any arithmetic on them)."""
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "d_head", "d_inner"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                _fail(name, v, "a positive integer")
        if self.d_embed is not None and (not isinstance(self.d_embed, int) or self.d_embed < 1):
            _fail("d_embed", self.d_embed, "a positive integer or None (= d_model)")
        prev = 0
        for c in self.cutoffs:
            if c <= prev or c >= self.vocab_size:
                _fail(
                    "cutoffs",
                    list(self.cutoffs),
                    f"strictly ascending ids in (0, vocab_size={self.vocab_size}), "
                    "without the vocabulary size itself",
                )
            prev = c
        if not isinstance(self.div_val, int) or self.div_val < 1:
            _fail("div_val", self.div_val, "an integer >= 1")
        for i in range(self.n_clusters):
            if self.embed_dim // self.div_val**i < 1:
                _fail(
                    "div_val",
                    self.div_val,
                    f"a value leaving cluster {i} at least one dimension "
                    f"(d_embed={self.embed_dim} // div_val**{i} is 0)",
                )
        if self.tie_projs is not None and len(self.tie_projs) != self.n_clusters:
            _fail(
                "tie_projs",
                list(self.tie_projs),
                f"one flag per cluster ({self.n_clusters} = len(cutoffs) + 1) or None",
            )
        for name in ("dropout", "dropatt", "init_range", "init_std", "proj_init_std",
                     "layer_norm_eps"):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or isinstance(v, bool):
                _fail(name, v, "a number")
        for name in ("tie_weight", "proj_same_dim", "untie_r", "pre_lnorm"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, getattr(self, name), "true or false")

    def _validate_values(self) -> None:
        """Ranges and combinations of fields whose types are known to be right."""
        if self.approx_parameters() > MAX_PARAMETERS:
            sizes = ("n_layer", "n_head", "d_model", "d_head", "d_inner", "vocab_size")
            largest = max(sizes, key=lambda name: getattr(self, name))
            _fail(
                largest,
                getattr(self, largest),
                f"a model under {MAX_PARAMETERS:.0e} parameters (these sizes give "
                f"about {self.approx_parameters():.1e})",
            )
        for name in ("dropout", "dropatt"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                _fail(name, v, "a probability in [0, 1)")
        if self.attn_type not in ATTN_TYPES:
            _fail("attn_type", self.attn_type, f"one of {sorted(ATTN_TYPES)}")
        if self.attn_type in (0, 2) and self.d_model % 2:
            _fail(
                "d_model", self.d_model, "an even width for the sinusoid encoding (attn_type 0, 2)"
            )
        if self.attn_type == 3 and self.n_head * self.d_head != self.d_model:
            _fail(
                "attn_type",
                self.attn_type,
                f"attn_type 3 only with n_head * d_head == d_model "
                f"({self.n_head} * {self.d_head} != {self.d_model})",
            )
        if self.sample_softmax != -1 and self.sample_softmax < 1:
            _fail("sample_softmax", self.sample_softmax, "-1 (off) or a positive sample count")
        if self.sample_softmax > 0 and self.cutoffs:
            _fail("sample_softmax", self.sample_softmax, "-1 when cutoffs are set (no adaptive)")
        if self.init not in INITS:
            _fail("init", self.init, f"one of {INITS}")
        for name in ("init_range", "init_std", "proj_init_std", "layer_norm_eps"):
            if getattr(self, name) <= 0:
                _fail(name, getattr(self, name), "a positive number")
        if not isinstance(self.segment, SegmentSettings):
            _fail("segment", self.segment, "a SegmentSettings")

    # ------------------------------------------------------------------ derived values
    def approx_parameters(self) -> int:
        """Weights in the layers and embeddings, roughly (a bound check before any memory is
        allocated, not the exact :meth:`TransformerXLLM.num_parameters`)."""
        inner = self.n_head * self.d_head
        per_layer = 5 * self.d_model * inner + 2 * self.d_model * self.d_inner
        return self.n_layer * per_layer + self.vocab_size * self.embed_dim

    @property
    def embed_dim(self) -> int:
        """``d_embed`` with ``None`` resolved to ``d_model``."""
        return self.d_model if self.d_embed is None else self.d_embed

    @property
    def n_clusters(self) -> int:
        """Number of adaptive clusters, the head included."""
        return len(self.cutoffs) + 1

    @property
    def cluster_ends(self) -> tuple[int, ...]:
        """``(0, *cutoffs, vocab_size)``: cluster ``i`` holds ids ``[ends[i], ends[i+1])``."""
        return (0, *self.cutoffs, self.vocab_size)

    def cluster_dim(self, i: int) -> int:
        """Embedding width of cluster ``i``."""
        return self.embed_dim // self.div_val**i

    def has_proj(self, i: int) -> bool:
        """Whether cluster ``i`` maps its embedding width to ``d_model`` with a projection."""
        if self.div_val == 1:
            return self.embed_dim != self.d_model
        return self.proj_same_dim or self.cluster_dim(i) != self.d_model

    def proj_tied(self, i: int) -> bool:
        """Whether the output projection of cluster ``i`` is the input projection."""
        return bool(self.tie_projs and self.tie_projs[i]) and self.has_proj(i)

    @property
    def max_klen(self) -> int:
        """Length of the learnable position tables of attn_type 1 and 3 (as in the authors'
        code: ``tgt_len + ext_len + mem_len`` of the default run settings)."""
        s = self.segment
        return s.tgt_len + s.ext_len + s.mem_len

    def replace(self, **changes: Any) -> TransformerXLConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # segment: a nested dict
        d["cutoffs"] = list(self.cutoffs)
        d["tie_projs"] = None if self.tie_projs is None else list(self.tie_projs)
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], source: str = "config", field: str = ""
    ) -> TransformerXLConfig:
        """From ``config.json``'s object, either layout (see the module's doc): every field's
        type checked strictly and unknown fields refused (:func:`transformer_xl.schema.build`),
        then the checks of the class; errors name ``source`` and the field (under ``field``)."""
        if isinstance(d, dict):
            d = dict(d)
            version = d.pop("format_version", 1)
            if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
                where = f"{field}.format_version" if field else "format_version"
                raise InputError(source, where, version, f"1 or {FORMAT_VERSION}")
            try:
                d = _nest_segment(d, source)
            except ValueError as e:
                raise constructor_error(e, source, field) from None
            d["segment"] = d["segment"].to_dict()  # plain again: checked strictly below
            if d.get("cutoffs", ()) is None:
                d.pop("cutoffs")
        return build(cls, d, source, field)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> TransformerXLConfig:
        return cls.from_dict(loads_json(text, source), source=source)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temporary file in the same folder, then rename)."""
        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TransformerXLConfig:
        return cls.from_json(read_text(path), source=str(path))
