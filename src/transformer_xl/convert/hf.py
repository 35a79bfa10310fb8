"""HF ``TransfoXL`` (transformers 4.x) checkpoints -> this project's model.

HF's port keeps the authors' PyTorch module layout under ``transformer.`` with the adaptive
softmax under ``crit.``; it orders the tail-cluster rows like TF (and like us), so the cluster
weights copy as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.keymap import Rule, apply_rules, stack

HF_LAYER = {  # ours (under layers.{k}.) <- HF (under transformer.layers.{k}.)
    "attn.qkv.weight": "dec_attn.qkv_net.weight",
    "attn.r_net.weight": "dec_attn.r_net.weight",
    "attn.o.weight": "dec_attn.o_net.weight",
    "attn.ln.weight": "dec_attn.layer_norm.weight",
    "attn.ln.bias": "dec_attn.layer_norm.bias",
    "ff.fc1.weight": "pos_ff.CoreNet.0.weight",
    "ff.fc1.bias": "pos_ff.CoreNet.0.bias",
    "ff.fc2.weight": "pos_ff.CoreNet.3.weight",
    "ff.fc2.bias": "pos_ff.CoreNet.3.bias",
    "ff.ln.weight": "pos_ff.layer_norm.weight",
    "ff.ln.bias": "pos_ff.layer_norm.bias",
}


def config_from_hf(hf: Mapping[str, Any] | Any) -> TransformerXLConfig:
    """Our config from an HF ``TransfoXLConfig`` (object or its ``config.json`` dict)."""
    get = (
        (lambda k, d=None: hf.get(k, d))
        if isinstance(hf, Mapping)
        else (lambda k, d=None: getattr(hf, k, d))
    )
    if get("attn_type", 0) != 0:
        raise ValueError(
            f"HF config: attn_type={get('attn_type')} is not supported by HF's model (only 0)"
        )
    cutoffs = tuple(get("cutoffs") or ())
    if not get("adaptive", True):
        cutoffs = ()
    return TransformerXLConfig(
        vocab_size=get("vocab_size", get("n_token")),
        n_layer=get("n_layer"),
        n_head=get("n_head"),
        d_model=get("d_model"),
        d_head=get("d_head"),
        d_inner=get("d_inner"),
        d_embed=get("d_embed"),
        cutoffs=cutoffs,
        div_val=get("div_val", 1),
        tie_weight=bool(get("tie_word_embeddings", True)),
        tie_projs=(False, *([bool(get("proj_share_all_but_first", False))] * len(cutoffs))),
        proj_same_dim=True,
        untie_r=bool(get("untie_r", True)),
        pre_lnorm=bool(get("pre_lnorm", False)),
        dropout=get("dropout", 0.1),
        dropatt=get("dropatt", 0.0),
        sample_softmax=get("sample_softmax", -1) if get("sample_softmax", -1) > 0 else -1,
        init=get("init", "normal"),
        init_range=get("init_range", 0.01),
        init_std=get("init_std", 0.02),
        proj_init_std=get("proj_init_std", 0.01),
        layer_norm_eps=get("layer_norm_epsilon", 1e-5),
        mem_len=get("mem_len", 1600) or 0,
        clamp_len=get("clamp_len", 1000) if get("clamp_len", 1000) > 0 else -1,
        same_length=bool(get("same_length", True)),
        same_length_keys="torch",
    )


def rules_from_hf(cfg: TransformerXLConfig) -> list[Rule]:
    """The key map HF -> ours for a model with config ``cfg``."""
    rules: list[Rule] = []
    n_tables = 1 if cfg.div_val == 1 else cfg.n_clusters
    for t in range(n_tables):
        rules.append(
            Rule(
                f"word_emb.emb_layers.{t}.weight", (f"transformer.word_emb.emb_layers.{t}.weight",)
            )
        )
        if cfg.has_proj(t):
            rules.append(Rule(f"word_emb.emb_projs.{t}", (f"transformer.word_emb.emb_projs.{t}",)))
        rules.append(Rule(f"crit.out_bias.{t}", (f"crit.out_layers.{t}.bias",)))
        if not cfg.tie_weight:
            rules.append(Rule(f"crit.out_weight.{t}", (f"crit.out_layers.{t}.weight",)))
    for i in range(cfg.n_clusters):
        t = 0 if cfg.div_val == 1 else i
        if cfg.has_proj(t) and not cfg.proj_tied(i):
            rules.append(Rule(f"crit.out_projs.{i}", (f"crit.out_projs.{i}",)))
    if cfg.n_clusters > 1:
        rules.append(Rule("crit.cluster_weight", ("crit.cluster_weight",)))
        rules.append(Rule("crit.cluster_bias", ("crit.cluster_bias",)))
    for name in ("r_w_bias", "r_r_bias"):
        if cfg.untie_r:
            srcs = tuple(f"transformer.layers.{k}.dec_attn.{name}" for k in range(cfg.n_layer))
            rules.append(Rule(name, srcs, stack, "per-layer biases stacked to [n_layer, H, Dh]"))
        else:
            rules.append(Rule(name, (f"transformer.{name}",)))
    for k in range(cfg.n_layer):
        for ours, theirs in HF_LAYER.items():
            rules.append(Rule(f"layers.{k}.{ours}", (f"transformer.layers.{k}.{theirs}",)))
    return rules


def _hf_skip(cfg: TransformerXLConfig):
    def skip(key: str) -> bool:
        if key.endswith("inv_freq"):  # the sinusoid's frequencies, a buffer we recompute
            return True
        if not cfg.untie_r and key.endswith(("dec_attn.r_w_bias", "dec_attn.r_r_bias")):
            return True  # HF registers the shared biases in every layer too
        if cfg.tie_weight and key.startswith("crit.out_layers.") and key.endswith(".weight"):
            return True  # tied to the embedding tables
        # tied projections are the embedding's
        return key.startswith("crit.out_projs.") and cfg.proj_tied(int(key.split(".")[2]))

    return skip


def state_from_hf(
    state: Mapping[str, Tensor], cfg: TransformerXLConfig, expected, source_name="HF checkpoint"
):
    return apply_rules(
        rules_from_hf(cfg), state, expected, skip=_hf_skip(cfg), source_name=source_name
    )


def from_hf_model(hf_model) -> Any:
    """Our model with the weights of an in-memory HF ``TransfoXLLMHeadModel``."""
    from transformer_xl.model.transformer import TransformerXLLM
    from transformer_xl.weights import load_state

    cfg = config_from_hf(hf_model.config)
    model = TransformerXLLM(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    load_state(model, state_from_hf(hf_model.state_dict(), cfg, expected), "HF model")
    return model
