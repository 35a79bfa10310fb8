"""Tests of transformer_xl.hf: they run in the transformers-5 environment (`.ci/hf5`)."""

import json

import pytest
import torch

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.api import export_hf
from transformer_xl.data.vocab import Vocab
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.segment import SegmentSettings

WORDS = [f"w{i}" for i in range(38)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(our model, its transformers-5 folder): adaptive softmax, memory, same-length window."""
    root = tmp_path_factory.mktemp("hf5")
    torch.manual_seed(0)
    cfg = TransformerXLConfig(
        vocab_size=40,
        n_layer=2,
        n_head=2,
        d_model=16,
        d_head=8,
        d_inner=32,
        cutoffs=(10, 20),
        div_val=2,
        dropout=0.0,
        segment=SegmentSettings(tgt_len=5, mem_len=6, clamp_len=8, same_length=True),
    )
    model = TransformerXLLM(cfg).eval()
    with torch.no_grad():  # untrained weights are near uniform: make the choices clear-cut
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    model.save_pretrained(root / "ours")
    Vocab(["<unk>", "<eos>", *WORDS], "word", unk_token="<unk>",
          special_tokens=["<unk>", "<eos>"]).save(root / "ours" / "vocab.json")  # fmt: skip
    export_hf(root / "ours", root / "hf", dataset="wikitext-103")
    assert json.loads((root / "hf" / "config.json").read_text())["eos_token_id"] is None
    return model, root / "hf"
