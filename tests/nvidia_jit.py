"""Their ``inference/mem_transformer_jit.py`` model as ``eval.py --save_torchscript`` writes it,
for tests/test_convert_nvidia.py: the same module tree and attribute names, with the softmax's and
the embedding's tensors in plain lists. The classes carry only the attributes (and a forward each,
which scripting needs); the converter reads the archive's module tree, never its code. No
``from __future__ import annotations`` here: TorchScript reads the class annotations."""

import torch


class Lin(torch.nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None):
        super().__init__()
        self.weight = torch.nn.Parameter(w.clone())
        self.bias = None if b is None else torch.nn.Parameter(b.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Norm(Lin):
    pass


class PositionalEmbedding(torch.nn.Module):
    def __init__(self, inv_freq):
        super().__init__()
        self.register_buffer("inv_freq", inv_freq.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Attn(torch.nn.Module):
    def __init__(self, s, k, mc):
        super().__init__()
        a = f"layers.{k}.dec_attn."
        self.qkv_net, self.r_net = Lin(s[a + "qkv_net.weight"]), Lin(s[a + "r_net.weight"])
        self.o_net = Lin(s[a + "o_net.weight"])
        self.layer_norm = Norm(s[a + "layer_norm.weight"], s[a + "layer_norm.bias"])
        self.pre_lnorm, self.n_head, self.d_head = mc["pre_lnorm"], mc["n_head"], mc["d_head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FF(torch.nn.Module):
    def __init__(self, s, k, mc):
        super().__init__()
        f = f"layers.{k}.pos_ff."
        self.CoreNet = torch.nn.Sequential(
            Lin(s[f + "CoreNet.0.weight"], s[f + "CoreNet.0.bias"]), torch.nn.ReLU(),
            torch.nn.Dropout(0.1), Lin(s[f + "CoreNet.3.weight"], s[f + "CoreNet.3.bias"]),
            torch.nn.Dropout(0.1),
        )  # fmt: skip
        self.layer_norm = Norm(s[f + "layer_norm.weight"], s[f + "layer_norm.bias"])
        self.d_inner, self.pre_lnorm = mc["d_inner"], mc["pre_lnorm"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Layer(torch.nn.Module):
    def __init__(self, s, k, mc):
        super().__init__()
        self.dec_attn, self.pos_ff = Attn(s, k, mc), FF(s, k, mc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class AdaptiveEmbedding(torch.nn.Module):
    emb_projs: list[torch.Tensor]

    def __init__(self, s, mc):
        super().__init__()
        n = 1 if mc["div_val"] == 1 else len(mc["cutoffs"]) + 1
        tables = [s[f"word_emb.emb_layers.{t}.weight"] for t in range(n)]
        self.emb_layers = torch.nn.ModuleList(
            torch.nn.Embedding.from_pretrained(w.clone(), freeze=False) for w in tables
        )
        # theirs always makes one projection per table (an unused zero one where d_embed = D)
        self.emb_projs = [
            s.get(f"word_emb.emb_projs.{t}", torch.zeros(mc["d_model"], w.shape[1])).clone()
            for t, w in enumerate(tables)
        ]
        self.cutoffs, self.div_val = [*mc["cutoffs"], mc["n_token"]], mc["div_val"]
        self.d_embed, self.d_proj = mc["d_embed"], mc["d_model"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ProjectedAdaptiveLogSoftmax(torch.nn.Module):
    out_projs: list[torch.Tensor | None]

    def __init__(self, s, mc, emb):
        super().__init__()
        n = len(emb.emb_projs)
        if mc["cutoffs"]:
            self.cluster_weight = torch.nn.Parameter(s["crit.cluster_weight"].clone())
            self.cluster_bias = torch.nn.Parameter(s["crit.cluster_bias"].clone())
        self.out_layers_biases = [s[f"crit.out_layers_biases.{t}"].clone() for t in range(n)]
        self.out_layers_weights = (
            [e.weight for e in emb.emb_layers] if mc["tie_weight"]
            else [s[f"crit.out_layers_weights.{t}"].clone() for t in range(n)]
        )  # fmt: skip
        has_proj = mc["div_val"] > 1 or mc["d_embed"] != mc["d_model"]
        self.out_projs = [
            None if not has_proj
            else emb.emb_projs[0 if mc["div_val"] == 1 else i] if tied
            else s[f"crit.out_projs.{i}"].clone()
            for i, tied in enumerate(mc["tie_projs"])
        ]  # fmt: skip
        self.tie_projs = mc["tie_projs"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class MemTransformerLM(torch.nn.Module):
    def __init__(self, s, mc):
        super().__init__()
        for key in ("n_token", "n_layer", "n_head", "d_model", "d_head", "d_embed", "div_val",
                    "tie_weight", "tie_projs", "tgt_len", "ext_len", "mem_len", "same_length",
                    "clamp_len", "attn_type", "sample_softmax"):  # fmt: skip
            setattr(self, key, mc[key])
        self.word_emb = AdaptiveEmbedding(s, mc)
        self.layers = torch.nn.ModuleList(Layer(s, k, mc) for k in range(mc["n_layer"]))
        self.crit = ProjectedAdaptiveLogSoftmax(s, mc, self.word_emb)
        self.pos_emb = PositionalEmbedding(s["pos_emb.inv_freq"])
        self.r_w_bias = torch.nn.Parameter(s["r_w_bias"].clone())
        self.r_r_bias = torch.nn.Parameter(s["r_r_bias"].clone())
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.crit(self.word_emb(x))
