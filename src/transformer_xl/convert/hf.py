"""HF ``TransfoXL`` (transformers 4.x) checkpoints <-> this project's model.

HF's port keeps the authors' PyTorch module layout under ``transformer.`` with the adaptive
softmax under ``crit.`` (see :mod:`transformer_xl.convert.torch_layout`); it orders the
tail-cluster rows like TF (and like us), so the cluster weights copy as they are.

An HF model folder: ``config.json`` (``model_type: transfo-xl``), ``model.safetensors`` or
``pytorch_model.bin`` (possibly sharded, with an ``*.index.json``), and the tokenizer's
``vocab.pkl`` / ``vocab.bin`` (a pickled dict of the authors' ``Vocab`` attributes).

Writing HF (``--to hf``) spells out what HF's model has and ours may not: a projection for every
cluster when ``div_val > 1`` (an identity where ours has none, as with ``proj_same_dim=False``),
copies of tied tensors under their HF names, the shared ``r_w_bias`` in every layer, and
``inv_freq``. HF ties projections only as "all but the first"; other tie patterns are written as
untied copies (the same numbers). HF's ``same_length`` window is ``mem_len`` keys (our
``window_keys="mem_len"``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.hf_export import is_hf5_config, load_txl_hf_folder
from transformer_xl.convert.hf_files import HF_CONFIG, read_hf_weights
from transformer_xl.convert.keymap import Rule, apply_rules, assemble, row
from transformer_xl.convert.torch_layout import (
    LAYER,
    n_tables,
    rules_from_torch_layout,
    skip_torch_layout,
    table_of,
)
from transformer_xl.schema import read_json
from transformer_xl.segment import SegmentSettings

HF_LAYER = LAYER
HF_VOCAB_FILES = ("vocab.pkl", "vocab.bin")


# ---------------------------------------------------------------------------- HF -> ours
# HF's TransfoXLConfig defaults (transformers 4.x): its save_pretrained writes only the fields
# that differ from them, so a config.json must be read against them
HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 267735, "cutoffs": [20000, 40000, 200000], "d_model": 1024, "d_embed": 1024,
    "n_head": 16, "d_head": 64, "d_inner": 4096, "div_val": 4, "pre_lnorm": False, "n_layer": 18,
    "mem_len": 1600, "clamp_len": 1000, "same_length": True, "proj_share_all_but_first": True,
    "attn_type": 0, "sample_softmax": -1, "adaptive": True, "dropout": 0.1, "dropatt": 0.0,
    "untie_r": True, "init": "normal", "init_range": 0.01, "proj_init_std": 0.01,
    "init_std": 0.02, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
}  # fmt: skip
_OLD_NAMES = {"vocab_size": "n_token", "tie_word_embeddings": "tie_weight"}  # pre-4.x configs


def config_from_hf(hf: Mapping[str, Any] | Any) -> TransformerXLConfig:
    """Our config from an HF ``TransfoXLConfig`` (object or its ``config.json`` dict; missing
    fields take HF's defaults, as HF reads them)."""
    fields = dict(hf) if isinstance(hf, Mapping) else dict(vars(hf))

    def get(key: str) -> Any:
        for name in (key, _OLD_NAMES.get(key)):
            if name in fields and fields[name] is not None:
                return fields[name]
        return HF_DEFAULTS[key]

    if get("attn_type") != 0:
        raise ValueError(f"HF config: attn_type={get('attn_type')} is not supported (only 0)")
    _check_hf_types(fields, get)
    cutoffs = tuple(get("cutoffs")) if get("adaptive") else ()
    tie_projs = fields.get("tie_projs")
    if tie_projs is None or len(tie_projs) != len(cutoffs) + 1:
        tie_projs = [False] + [bool(get("proj_share_all_but_first"))] * len(cutoffs)
    sample = get("sample_softmax")
    return TransformerXLConfig(
        vocab_size=get("vocab_size"),
        n_layer=get("n_layer"),
        n_head=get("n_head"),
        d_model=get("d_model"),
        d_head=get("d_head"),
        d_inner=get("d_inner"),
        d_embed=get("d_embed"),
        cutoffs=cutoffs,
        div_val=get("div_val"),
        tie_weight=bool(get("tie_word_embeddings")),
        tie_projs=tuple(bool(t) for t in tie_projs),
        proj_same_dim=True,
        untie_r=bool(get("untie_r")),
        pre_lnorm=bool(get("pre_lnorm")),
        dropout=get("dropout"),
        dropatt=get("dropatt"),
        sample_softmax=sample if sample > 0 else -1,
        init=get("init"),
        init_range=get("init_range"),
        init_std=get("init_std"),
        proj_init_std=get("proj_init_std"),
        layer_norm_eps=get("layer_norm_epsilon"),
        segment=SegmentSettings(
            mem_len=get("mem_len") or 0,
            clamp_len=get("clamp_len") if get("clamp_len") > 0 else -1,
            same_length=bool(get("same_length")),
            window_keys="mem_len",
        ),
    )


def _check_hf_types(fields: Mapping[str, Any], get: Callable[[str], Any]) -> None:
    """The HF fields read as lists or compared as numbers have those types (the rest are
    checked by :class:`TransformerXLConfig`)."""
    for key in ("cutoffs", "tie_projs"):
        v = get(key) if key == "cutoffs" else fields.get(key)
        if v is not None and not isinstance(v, list | tuple):
            raise ValueError(f"HF config: {key}={v!r} is invalid: expected a list")
    for key in ("sample_softmax", "clamp_len", "attn_type"):
        v = get(key)
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise ValueError(f"HF config: {key}={v!r} is invalid: expected a number")


def rules_from_hf(cfg: TransformerXLConfig) -> list[Rule]:
    """The key map HF -> ours for a model with config ``cfg``."""
    return rules_from_torch_layout(cfg, body="transformer.", reversed_clusters=False)


def _hf_skip(cfg: TransformerXLConfig):
    return skip_torch_layout(cfg)


def state_from_hf(
    state: Mapping[str, Tensor], cfg: TransformerXLConfig, expected, source_name="HF checkpoint"
):
    rules = rules_from_hf(cfg)
    return apply_rules(rules, state, expected, skip=_hf_skip(cfg), source_name=source_name)


def from_hf_model(hf_model) -> Any:
    """Our model with the weights of an in-memory HF ``TransfoXLLMHeadModel``."""
    cfg = config_from_hf(hf_model.config)
    model, _ = assemble(cfg, rules_from_hf(cfg), hf_model.state_dict(), skip=_hf_skip(cfg),
                        source_name="HF model")  # fmt: skip
    return model


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / HF_CONFIG
    cfg = read_json(path)  # strict (transformer_xl.schema); the fields are checked below
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if cfg.get("model_type") not in ("transfo-xl", "transformer-xl", None):
        raise ValueError(
            f"{path}: model_type={cfg.get('model_type')!r}, expected 'transfo-xl' (HF's "
            "TransfoXL) or 'transformer-xl' (this package's transformers-5 format)"
        )
    return cfg


def with_saved_run_settings(cfg: TransformerXLConfig, hf: Mapping[str, Any], source) -> Any:
    """``cfg`` with the run settings our legacy export keeps under ``txl_run_settings`` (HF's
    config has no ``tgt_len`` and no same-length window)."""
    saved = hf.get("txl_run_settings")
    if saved is None:
        return cfg
    if not isinstance(saved, dict):
        raise ValueError(f"{source}: txl_run_settings is not an object")
    segment = SegmentSettings.from_dict(saved, f"{source}: txl_run_settings", base=cfg.segment)
    return cfg.replace(segment=segment)


def load_hf_folder(
    directory: str | os.PathLike,
    adjust: Callable[[TransformerXLConfig], TransformerXLConfig] | None = None,
):
    """Our model from an HF folder; returns ``(model, counts)``. ``adjust`` may change the
    config's run settings before the model is built."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a folder (expected an HF model folder)")
    hf = read_hf_config(directory)
    if is_hf5_config(hf):
        return load_txl_hf_folder(directory, hf, adjust)
    cfg = with_saved_run_settings(config_from_hf(hf), hf, directory / HF_CONFIG)
    state = read_hf_weights(directory)
    skip = _hf_skip(cfg)
    model, converted = assemble(adjust(cfg) if adjust else cfg, rules_from_hf(cfg), state,
                                skip=skip, source_name=str(directory))  # fmt: skip
    return model, {
        "converted": len(converted),
        "skipped": sum(1 for k in state if skip(k)),
        "source": len(state),
    }


# ---------------------------------------------------------------------------- ours -> HF
def _share_all_but_first(cfg: TransformerXLConfig) -> bool:
    """Whether HF's ``proj_share_all_but_first`` reproduces our tail projections exactly."""
    if cfg.n_clusters == 1 or (cfg.div_val == 1 and not cfg.has_proj(0)):
        return False
    return all(
        cfg.proj_tied(i) or not cfg.has_proj(table_of(cfg, i)) for i in range(1, cfg.n_clusters)
    )


def hf_config_from_ours(cfg: TransformerXLConfig, eos_token_id: int = 0) -> dict[str, Any]:
    """The HF ``config.json`` for our config (attention type 0 only)."""
    if cfg.attn_type != 0:
        raise ValueError(f"attn_type={cfg.attn_type}: HF's TransfoXL has only attention type 0")
    return {
        "architectures": ["TransfoXLLMHeadModel"],
        "model_type": "transfo-xl",
        "vocab_size": cfg.vocab_size,
        "cutoffs": list(cfg.cutoffs),
        "adaptive": True,
        "d_model": cfg.d_model,
        "d_embed": cfg.embed_dim,
        "n_head": cfg.n_head,
        "d_head": cfg.d_head,
        "d_inner": cfg.d_inner,
        "div_val": cfg.div_val,
        "pre_lnorm": cfg.pre_lnorm,
        "n_layer": cfg.n_layer,
        "mem_len": cfg.segment.mem_len,
        "clamp_len": cfg.segment.clamp_len,
        "same_length": cfg.segment.same_length,
        "proj_share_all_but_first": _share_all_but_first(cfg),
        "tie_projs": [False] + [_share_all_but_first(cfg)] * len(cfg.cutoffs),
        "attn_type": 0,
        "sample_softmax": -1,  # HF's model cannot train with it; evaluation is the full softmax
        "dropout": cfg.dropout,
        "dropatt": cfg.dropatt,
        "untie_r": cfg.untie_r,
        "init": cfg.init,
        "init_range": cfg.init_range,
        "proj_init_std": cfg.proj_init_std,
        "init_std": cfg.init_std,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "tie_word_embeddings": cfg.tie_weight,
        "eos_token_id": eos_token_id,
    }


def hf_state_shapes(c: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of HF's ``TransfoXLLMHeadModel.state_dict()`` for config dict ``c``."""
    V, D, E, H, Dh = c["vocab_size"], c["d_model"], c["d_embed"], c["n_head"], c["d_head"]
    ends = [0, *c["cutoffs"], V]
    widths = [E // c["div_val"] ** i for i in range(len(ends) - 1)]
    s: dict[str, tuple[int, ...]] = {}
    emb, crit = "transformer.word_emb.", "crit."
    if c["div_val"] == 1:
        s[emb + "emb_layers.0.weight"] = (V, E)
        if D != E:
            s[emb + "emb_projs.0"] = (D, E)
        s[crit + "out_layers.0.weight"], s[crit + "out_layers.0.bias"] = (V, E), (V,)
        s.update({f"{crit}out_projs.{i}": (D, E) for i in range(len(widths)) if D != E})
    else:
        for i, w in enumerate(widths):
            n = ends[i + 1] - ends[i]
            s[f"{emb}emb_layers.{i}.weight"], s[f"{emb}emb_projs.{i}"] = (n, w), (D, w)
            s[f"{crit}out_layers.{i}.weight"], s[f"{crit}out_layers.{i}.bias"] = (n, w), (n,)
            s[f"{crit}out_projs.{i}"] = (D, w)
    n_tail = len(widths) - 1
    if n_tail:
        s[crit + "cluster_weight"], s[crit + "cluster_bias"] = (n_tail, E), (n_tail,)
    s["transformer.pos_emb.inv_freq"] = ((D + 1) // 2,)
    if not c["untie_r"]:
        s["transformer.r_w_bias"] = s["transformer.r_r_bias"] = (H, Dh)
    shapes = {"qkv_net.weight": (3 * H * Dh, D), "r_net.weight": (H * Dh, D),
              "o_net.weight": (D, H * Dh), "r_w_bias": (H, Dh), "r_r_bias": (H, Dh)}  # fmt: skip
    for k in range(c["n_layer"]):
        p = f"transformer.layers.{k}."
        s.update({f"{p}dec_attn.{n}": shape for n, shape in shapes.items()})
        for n in ("dec_attn.layer_norm.", "pos_ff.layer_norm."):
            s[p + n + "weight"] = s[p + n + "bias"] = (D,)
        s[p + "pos_ff.CoreNet.3.bias"] = (D,)
        s[p + "pos_ff.CoreNet.0.weight"] = (c["d_inner"], D)
        s[p + "pos_ff.CoreNet.0.bias"] = (c["d_inner"],)
        s[p + "pos_ff.CoreNet.3.weight"] = (D, c["d_inner"])
    return s


def _inv_freq(d_model: int):
    def make() -> Tensor:
        return 1 / (10000 ** (torch.arange(0.0, d_model, 2.0) / d_model))

    return make


def _identity(d: int):
    def make() -> Tensor:
        return torch.eye(d)

    return make


def rules_to_hf(cfg: TransformerXLConfig) -> list[Rule]:
    """The key map ours -> HF (targets are HF names)."""
    emb, rules = "transformer.word_emb.", []
    for t in range(n_tables(cfg)):
        rules.append(Rule(f"{emb}emb_layers.{t}.weight", (f"word_emb.emb_layers.{t}.weight",)))
        out_w = f"word_emb.emb_layers.{t}.weight" if cfg.tie_weight else f"crit.out_weight.{t}"
        rules.append(Rule(f"crit.out_layers.{t}.weight", (out_w,), note="copy when tied"))
        rules.append(Rule(f"crit.out_layers.{t}.bias", (f"crit.out_bias.{t}",)))
        if cfg.has_proj(t):
            rules.append(Rule(f"{emb}emb_projs.{t}", (f"word_emb.emb_projs.{t}",)))
        elif cfg.div_val > 1:  # HF always projects: an identity (d_t == d_model here)
            rules.append(Rule(f"{emb}emb_projs.{t}", (), _identity(cfg.d_model), "identity"))
    for i in range(cfg.n_clusters):
        t = table_of(cfg, i)
        if cfg.proj_tied(i):
            rules.append(
                Rule(f"crit.out_projs.{i}", (f"word_emb.emb_projs.{t}",), note="tied copy")
            )
        elif cfg.has_proj(t):
            rules.append(Rule(f"crit.out_projs.{i}", (f"crit.out_projs.{i}",)))
        elif cfg.div_val > 1:
            rules.append(Rule(f"crit.out_projs.{i}", (), _identity(cfg.d_model), "identity"))
    if cfg.n_clusters > 1:
        rules.append(Rule("crit.cluster_weight", ("crit.cluster_weight",)))
        rules.append(Rule("crit.cluster_bias", ("crit.cluster_bias",)))
    rules.append(Rule("transformer.pos_emb.inv_freq", (), _inv_freq(cfg.d_model), "recomputed"))
    for name in ("r_w_bias", "r_r_bias"):
        if not cfg.untie_r:
            rules.append(Rule(f"transformer.{name}", (name,)))
        for k in range(cfg.n_layer):
            fn = row(k) if cfg.untie_r else None  # HF also lists a shared bias in every layer
            rules.append(Rule(f"transformer.layers.{k}.dec_attn.{name}", (name,), fn))
    for k in range(cfg.n_layer):
        for ours, theirs in LAYER.items():
            rules.append(Rule(f"transformer.layers.{k}.{theirs}", (f"layers.{k}.{ours}",)))
    return rules


def hf_state_from_ours(model) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """HF's ``config.json`` dict and state dict for our model (all tensors, ties as copies)."""
    cfg = model.config
    hf_cfg = hf_config_from_ours(cfg)
    state = apply_rules(
        rules_to_hf(cfg), model.state_dict(), hf_state_shapes(hf_cfg), source_name="our model"
    )
    return hf_cfg, state
