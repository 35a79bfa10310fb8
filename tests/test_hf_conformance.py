"""Conformance with an independent implementation: HF's TransfoXL (transformers 4.37.2).

Random small configurations; HF's weights mapped onto ours; per-token log-probabilities compared
over several consecutive segments carrying memory (HF started from empty memories, like ours).
"""

import warnings

import pytest
import torch
from transformers import TransfoXLConfig, TransfoXLLMHeadModel  # the `test` extra installs it

from transformer_xl.convert.hf import from_hf_model

CASES = [
    dict(cutoffs=[20, 50], div_val=2, d_embed=32, proj_share_all_but_first=True, untie_r=True,
         same_length=True, clamp_len=5),
    dict(cutoffs=[30], div_val=4, d_embed=32, proj_share_all_but_first=False, untie_r=False,
         same_length=False, clamp_len=-1),
    dict(cutoffs=[20, 50], div_val=1, d_embed=16, proj_share_all_but_first=True, untie_r=True,
         same_length=True, clamp_len=-1),
    dict(cutoffs=[], adaptive=False, div_val=1, d_embed=32, untie_r=True, same_length=True, clamp_len=3),
    dict(cutoffs=[10, 40, 70], div_val=2, d_embed=64, proj_share_all_but_first=True, untie_r=True,
         same_length=True, clamp_len=7, pre_lnorm=True),
]  # fmt: skip


def hf_model(case, seed):
    torch.manual_seed(seed)
    cfg = TransfoXLConfig(
        vocab_size=100, d_model=32, n_head=4, d_head=8, d_inner=48, n_layer=3, mem_len=7,
        dropout=0.0, dropatt=0.0, **case,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransfoXLLMHeadModel(cfg).eval()
    with torch.no_grad():  # HF initialises biases to zero; perturb everything
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("impl", ["auto", "sdpa", "eager"])
@pytest.mark.parametrize("case_id", range(len(CASES)))
def test_log_probs_match_hf_over_segments_with_memory(case_id, impl):
    hf = hf_model(CASES[case_id], seed=case_id)
    ours = from_hf_model(hf).eval()
    ours.set_attn_impl(impl)
    B, T, n_seg = 3, 5, 4
    x = torch.randint(0, 100, (B, T * n_seg + 1))
    hf_mems = [torch.empty(0, B, 32) for _ in range(3)]
    our_mems = None
    worst = 0.0
    with torch.no_grad():
        for s in range(n_seg):
            inp, lab = x[:, s * T : (s + 1) * T], x[:, s * T + 1 : (s + 1) * T + 1]
            h = hf(inp, mems=hf_mems)
            hf_mems = h.mems
            o = ours(
                inp,
                settings=ours.config.segment.replace(window_keys="mem_len"),
                labels=lab,
                mems=our_mems,
                return_log_probs=True,
            )
            our_mems = o.mems
            hf_tok = h.prediction_scores.gather(-1, lab[..., None]).squeeze(-1)
            worst = max(
                worst,
                (hf_tok + o.token_nll).abs().max().item(),
                (h.prediction_scores - o.log_probs).abs().max().item(),
            )
            # the memories agree too (HF keeps [M, B, D])
            for a, b in zip(hf_mems, our_mems, strict=True):
                assert torch.allclose(a.transpose(0, 1), b, atol=1e-5)
    assert worst <= 1e-5, worst
