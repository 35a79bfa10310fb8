"""The authors' initialisation: every weight matrix from N(0, init_std) or U(-init_range,
init_range), projections from N(0, proj_init_std), biases zero, layer-norm gains N(1, init_std)."""

from __future__ import annotations

import torch
from torch import nn

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model.adaptive import AdaptiveEmbedding, AdaptiveSoftmaxParams


def init_weights(model: nn.Module, cfg: TransformerXLConfig) -> None:

    def weight(t: torch.Tensor) -> None:
        if cfg.init == "uniform":
            nn.init.uniform_(t, -cfg.init_range, cfg.init_range)
        else:
            nn.init.normal_(t, 0.0, cfg.init_std)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                weight(m.weight)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                weight(m.weight)
            elif isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, 1.0, cfg.init_std)
                m.bias.zero_()
            elif isinstance(m, AdaptiveEmbedding):
                for p in m.emb_projs.values():
                    nn.init.normal_(p, 0.0, cfg.proj_init_std)
            elif isinstance(m, AdaptiveSoftmaxParams):
                for p in m.out_projs.values():
                    nn.init.normal_(p, 0.0, cfg.proj_init_std)
                for p in m.out_weight.values():
                    weight(p)
                for p in m.out_bias:
                    p.zero_()
                if m.cluster_weight is not None:
                    weight(m.cluster_weight)
                    m.cluster_bias.zero_()
        for name in ("r_w_bias", "r_r_bias", "r_emb"):
            p = getattr(model, name, None)
            if p is not None:
                weight(p)
        if getattr(model, "r_bias", None) is not None:
            model.r_bias.zero_()
