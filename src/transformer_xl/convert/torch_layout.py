"""Key maps for the module layout of the authors' PyTorch code, which HF's port keeps.

The authors' ``MemTransformerLM`` state: ``word_emb.emb_layers.{t}.weight`` and
``word_emb.emb_projs.{t}`` (``[d_model, d_t]``), ``layers.{k}.dec_attn.*``, ``layers.{k}.pos_ff.*``,
shared ``r_w_bias`` / ``r_r_bias`` ``[H, Dh]``, the buffer ``pos_emb.inv_freq`` and the softmax
``crit.out_layers.{t}`` (``Linear``; its weight is the embedding table when tied),
``crit.out_projs.{i}`` (the embedding's projection when tied), ``crit.cluster_weight`` /
``crit.cluster_bias`` (tail cluster ``i`` in row ``n_tail - i``: reversed against ours).
HF's port puts everything but ``crit`` under ``transformer.``, keeps the rows in our order, and
with ``untie_r`` holds per-layer ``dec_attn.r_w_bias``.

``body`` below is the prefix of the non-softmax keys (``""`` or ``"transformer."``).
"""

from __future__ import annotations

from collections.abc import Callable

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.keymap import Rule, flip, stack

LAYER = {  # ours (under layers.{k}.) <- theirs (under {body}layers.{k}.)
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


def n_tables(cfg: TransformerXLConfig) -> int:
    """Embedding tables (and output weight/bias pairs): one with ``div_val == 1``."""
    return 1 if cfg.div_val == 1 else cfg.n_clusters


def table_of(cfg: TransformerXLConfig, i: int) -> int:
    """The table (and projection) that cluster ``i`` uses."""
    return 0 if cfg.div_val == 1 else i


def rules_from_torch_layout(
    cfg: TransformerXLConfig, *, body: str, reversed_clusters: bool, output_layer: bool = False
) -> list[Rule]:
    """The key map theirs -> ours. ``reversed_clusters``: the authors' tail-cluster row order;
    ``output_layer``: the sampled-softmax model's ``out_layer`` instead of ``crit``."""
    rules: list[Rule] = []
    for t in range(n_tables(cfg)):
        rules.append(
            Rule(f"word_emb.emb_layers.{t}.weight", (f"{body}word_emb.emb_layers.{t}.weight",))
        )
        if cfg.has_proj(t):
            rules.append(Rule(f"word_emb.emb_projs.{t}", (f"{body}word_emb.emb_projs.{t}",)))
        if output_layer:
            rules.append(Rule(f"crit.out_bias.{t}", ("out_layer.bias",)))
            rules.append(Rule(f"crit.out_weight.{t}", ("out_layer.weight",)))
            continue
        rules.append(Rule(f"crit.out_bias.{t}", (f"crit.out_layers.{t}.bias",)))
        if not cfg.tie_weight:
            rules.append(Rule(f"crit.out_weight.{t}", (f"crit.out_layers.{t}.weight",)))
    for i in range(cfg.n_clusters):
        if cfg.has_proj(table_of(cfg, i)) and not cfg.proj_tied(i):
            rules.append(Rule(f"crit.out_projs.{i}", (f"crit.out_projs.{i}",)))
    if cfg.n_clusters > 1:
        fn, note = (flip, "tail-cluster rows reversed") if reversed_clusters else (None, "")
        rules.append(Rule("crit.cluster_weight", ("crit.cluster_weight",), fn, note))
        rules.append(Rule("crit.cluster_bias", ("crit.cluster_bias",), fn, note))
    for name in ("r_w_bias", "r_r_bias"):
        if cfg.untie_r:
            srcs = tuple(f"{body}layers.{k}.dec_attn.{name}" for k in range(cfg.n_layer))
            rules.append(Rule(name, srcs, stack, "per-layer biases stacked to [n_layer, H, Dh]"))
        else:
            rules.append(Rule(name, (f"{body}{name}",)))
    for k in range(cfg.n_layer):
        for ours, theirs in LAYER.items():
            rules.append(Rule(f"layers.{k}.{ours}", (f"{body}layers.{k}.{theirs}",)))
    return rules


def skip_torch_layout(cfg: TransformerXLConfig) -> Callable[[str], bool]:
    """Source keys that are deliberately not converted (each a duplicate or recomputed)."""

    def skip(key: str) -> bool:
        if key.endswith("pos_emb.inv_freq"):  # the sinusoid's frequencies, recomputed
            return True
        if not cfg.untie_r and key.endswith(("dec_attn.r_w_bias", "dec_attn.r_r_bias")):
            return True  # HF registers the shared biases in every layer too
        if cfg.tie_weight and key.startswith("crit.out_layers.") and key.endswith(".weight"):
            return True  # tied to the embedding tables
        # tied projections are the embedding's
        return key.startswith("crit.out_projs.") and cfg.proj_tied(int(key.split(".")[2]))

    return skip
