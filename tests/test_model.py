"""Model invariants: causality, memory semantics, adaptive softmax, kernels, save/load."""

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.memory import update_mems
from transformer_xl.model.attention import PositionTerms, relative_distances, sinusoid
from transformer_xl.model.kernels.registry import resolve_attention
from transformer_xl.presets import preset_config
from transformer_xl.segment import FIELDS as SEGMENT_FIELDS
from transformer_xl.segment import SegmentSettings

EAGER = resolve_attention("eager", device_type="cpu", position_term=True)


def make(**kw):
    """A small model; segment fields among ``kw`` change its default settings (mem_len 6)."""
    base = dict(
        vocab_size=60, n_layer=2, n_head=2, d_model=16, d_head=8, d_inner=24, dropout=0.0,
        cutoffs=(10, 30), div_val=2, tie_projs=(False, True, False),
    )  # fmt: skip
    run = {k: kw.pop(k) for k in SEGMENT_FIELDS if k in kw}
    base.update(kw, segment=SegmentSettings(mem_len=6).replace(**run))
    torch.manual_seed(1)
    model = TransformerXLLM(TransformerXLConfig(**base)).eval()
    with torch.no_grad():  # larger weights so that every term matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def segments(model, x, y, T, **run):
    """Segments of ``T`` with memory; ``run`` changes the model's settings."""
    settings = model.config.segment.replace(**run)
    mems, nlls, lps = None, [], []
    for s in range(0, x.shape[1], T):
        y_s = y[:, s : s + T]
        out = model(
            x[:, s : s + T], labels=y_s, mems=mems, settings=settings, return_log_probs=True
        )
        mems = out.mems
        nlls.append(out.token_nll)
        lps.append(out.log_probs)
    return torch.cat(nlls, 1), torch.cat(lps, 1), mems


@pytest.mark.parametrize("attn_type", [0, 1, 2, 3])
def test_causal(attn_type):
    model = make(attn_type=attn_type, d_head=8, n_head=2)
    x = torch.randint(0, 60, (2, 12))
    y = torch.randint(0, 60, (2, 12))
    _, lp1, _ = segments(model, x, y, 4)
    x2 = x.clone()
    x2[:, 7] = (x2[:, 7] + 1) % 60
    _, lp2, _ = segments(model, x2, y, 4)
    assert torch.equal(lp1[:, :7], lp2[:, :7])  # positions before the change: bit-identical
    assert not torch.allclose(lp1[:, 7:], lp2[:, 7:])


@pytest.mark.parametrize("attn_type", [0, 1])
@pytest.mark.parametrize("same_length", [False, True])
def test_segments_with_full_memory_equal_one_pass(attn_type, same_length):
    # relative positions only: with absolute ones (2, 3) a position's encoding depends on the
    # window, which is exactly the temporal confusion the paper's relative scheme removes
    model = make(attn_type=attn_type)
    x = torch.randint(0, 60, (3, 12))
    y = torch.randint(0, 60, (3, 12))
    kw = dict(mem_len=12, same_length=same_length)
    one, lp_one, _ = segments(model, x, y, 12, **kw)
    seg, lp_seg, mems = segments(model, x, y, 4, **kw)
    assert torch.allclose(one, seg, atol=1e-5)
    assert torch.allclose(lp_one, lp_seg, atol=1e-5)
    assert all(m.shape == (3, 12, 16) and not m.requires_grad for m in mems)


def reference_with_mask(model, x, y, allowed):
    """One pass over the whole sequence with an explicit [L, L] visibility matrix (attn_type 0)."""
    cfg = model.config
    L = x.shape[1]
    h = model.word_emb(x)
    r = sinusoid(relative_distances(L, cfg.segment.clamp_len), cfg.d_model)
    for _i, layer in enumerate(model.layers):
        pos = PositionTerms(
            content_bias=model.r_w_bias, pos_keys=layer.attn.project_positions(r),
            pos_query_bias=model.r_r_bias,
        )  # fmt: skip
        h = layer(h, None, ~allowed, pos, attention=EAGER)
    return -model.log_probs(h).gather(-1, y[..., None]).squeeze(-1)


@pytest.mark.parametrize("mem_len,T", [(3, 4), (6, 4), (5, 3)])
def test_memory_equals_one_pass_with_equivalent_mask(mem_len, T):
    """Segment s sees its own causal prefix plus the last min(mem_len, s*T) positions before it."""
    model = make(cutoffs=(), div_val=1, tie_projs=None)
    L = 12
    x = torch.randint(0, 60, (2, L))
    y = torch.randint(0, 60, (2, L))
    seg, _, _ = segments(model, x, y, T, mem_len=mem_len)
    p = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    start = (p // T) * T
    lo = start - torch.clamp(start, max=mem_len)
    allowed = (j <= p) & (j >= lo)
    with torch.no_grad():
        ref = reference_with_mask(model, x, y, allowed)
    assert torch.allclose(seg, ref, atol=1e-5)


def test_memory_update_with_ext_len():
    h = [torch.arange(10.0).view(1, 10, 1)]
    m = update_mems(None, h, mem_len=4, ext_len=3)
    assert m[0].flatten().tolist() == [3.0, 4.0, 5.0, 6.0]  # the last 3 positions are left out
    m2 = update_mems(m, [torch.arange(10.0, 15.0).view(1, 5, 1)], mem_len=6, ext_len=0)
    assert m2[0].flatten().tolist() == [6.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    assert update_mems(None, h, mem_len=0) == ()


def test_memory_is_detached_and_capped():
    model = make().train()
    x = torch.randint(0, 60, (2, 5))
    out = model(x, settings=model.config.segment.replace(mem_len=3), labels=x)
    assert [m.shape for m in out.mems] == [torch.Size([2, 3, 16])] * 2
    assert not any(m.requires_grad for m in out.mems)
    out2 = model(x, settings=model.config.segment.replace(mem_len=3), labels=x, mems=out.mems)
    out2.loss.backward()  # no gradient into the previous segment's graph
    assert model(x, settings=model.config.segment.replace(mem_len=0)).mems == ()


def test_bad_memory_is_reported():
    model = make()
    x = torch.randint(0, 60, (2, 5))
    mems = model(x).mems
    with pytest.raises(ValueError, match="one per layer"):
        model(x, mems=mems[:1])
    with pytest.raises(ValueError, match=r"mems\[0\] has shape"):
        model(x[:1], mems=mems)
    with pytest.raises(ValueError, match="labels shape"):
        model(x, labels=x[:, :3])


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(div_val=1, cutoffs=(10, 30), d_embed=8, tie_projs=(False, True, True)),
        dict(div_val=4, cutoffs=(10, 30), d_embed=32, proj_same_dim=False),
        dict(cutoffs=(), div_val=1, tie_projs=None),
        dict(tie_weight=False),
    ],
)
def test_adaptive_softmax_sums_to_one_and_matches_nll(kw):
    model = make(**kw)
    x = torch.randint(0, 60, (2, 7))
    y = torch.arange(14).view(2, 7) * 4 % 60  # labels in every cluster
    out = model(x, labels=y, return_log_probs=True)
    total = out.log_probs.double().exp().sum(-1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)
    picked = out.log_probs.gather(-1, y[..., None]).squeeze(-1)
    assert torch.allclose(-picked, out.token_nll, atol=1e-5)


def test_eager_and_sdpa_agree():
    model = make(untie_r=True, clamp_len=3)
    x = torch.randint(0, 60, (2, 16))
    a, _, _ = segments(model, x, x, 5, same_length=True)
    model.set_attn_impl("eager")
    b, _, _ = segments(model, x, x, 5, same_length=True)
    assert torch.allclose(a, b, atol=1e-5)


def test_sampled_softmax_trains_and_eval_uses_full_softmax():
    model = make(cutoffs=(), div_val=1, tie_projs=None, sample_softmax=8).train()
    x = torch.randint(0, 60, (2, 6))
    out = model(x, labels=x)
    assert out.token_nll.shape == (2, 6) and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.word_emb.emb_layers[0].weight.grad is not None
    model.eval()
    full = model(x, labels=x, return_log_probs=True)
    picked = -full.log_probs.gather(-1, x[..., None]).squeeze(-1)
    assert torch.allclose(picked, full.token_nll, atol=1e-6)


def test_sampler_distribution():
    from transformer_xl.model.adaptive import LogUniformSampler

    s = LogUniformSampler(1000, 50)
    assert abs(s.prob.sum().item() - 1) < 1e-9
    assert torch.all(s.prob[:-1] >= s.prob[1:])  # frequent (low) ids more likely
    neg = s.sample(torch.Generator().manual_seed(0))
    assert neg.unique().numel() == neg.numel() <= 100


def test_dropout_only_in_training():
    model = make(dropout=0.3, dropatt=0.3)
    x = torch.randint(0, 60, (2, 6))
    model.eval()
    assert torch.equal(model(x, labels=x).token_nll, model(x, labels=x).token_nll)
    model.train()
    assert not torch.equal(model(x, labels=x).token_nll, model(x, labels=x).token_nll)


def test_run_settings_are_not_written_onto_the_model():
    model = make()
    x = torch.randint(0, 60, (1, 4))
    before = model.config
    model(
        x,
        settings=model.config.segment.replace(
            mem_len=2, clamp_len=1, same_length=True, window_keys="mem_len"
        ),
    )
    assert model.config is before and model.config.segment.mem_len == 6


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = make(untie_r=True)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    again = TransformerXLLM.from_pretrained(tmp_path / "m").eval()
    assert again.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x = torch.randint(0, 60, (2, 8))
    assert torch.equal(model(x, labels=x).token_nll, again(x, labels=x).token_nll)


def test_load_errors_name_the_file(tmp_path):
    model = make()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(
        ValueError,
        match="model.safetensors: got a file of 8 bytes or fewer, expected a readable safetensors",
    ):
        TransformerXLLM.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="missing: no such file or folder"):
        TransformerXLLM.from_pretrained(tmp_path / "missing")
    # weights that do not fit the config
    make(n_layer=3).save_pretrained(tmp_path / "three")
    (tmp_path / "three" / "config.json").write_text(model.config.to_json())
    with pytest.raises(ValueError, match=r"unexpected \['layers.2"):
        TransformerXLLM.from_pretrained(tmp_path / "three")


def test_tied_weights_are_shared_and_stored_once():
    model = make(tie_weight=True, tie_projs=(False, True, True))
    keys = set(model.state_dict())
    assert not any(k.startswith("crit.out_weight") for k in keys)
    assert "crit.out_projs.0" in keys and "crit.out_projs.1" not in keys
    params = model.crit.clusters(model.word_emb)
    assert params[1].weight is model.word_emb.emb_layers[1].weight
    assert params[1].proj is model.word_emb.emb_projs["1"]


@pytest.mark.parametrize("init", ["normal", "uniform"])
def test_authors_initialisation(init):
    cfg = preset_config("tiny", init=init, init_std=0.02, init_range=0.1)
    model = TransformerXLLM(cfg)
    w = model.layers[0].attn.qkv.weight
    if init == "normal":
        assert abs(w.std().item() - 0.02) < 0.002
    else:
        assert w.abs().max().item() <= 0.1 and w.std().item() > 0.05
    assert abs(model.layers[0].ff.ln.weight.mean().item() - 1.0) < 0.01
    assert model.layers[0].ff.fc1.bias.abs().max().item() == 0.0


def test_training_forward_and_backward_trace_whole_under_torch_compile():
    """One graph per call (fullgraph: no graph break, e.g. from a host read inside rel_shift or
    the attention function), forward and backward traced (aot_eager), the same loss and
    gradients as eager; memory on the second segment, position scores padded (K + 1 >= 64)."""
    cfg = TransformerXLConfig(
        vocab_size=40,
        n_layer=2,
        n_head=2,
        d_model=16,
        d_head=8,
        d_inner=32,
        dropout=0.0,
        segment=SegmentSettings(tgt_len=40, mem_len=40),
    )
    torch.manual_seed(0)
    model = TransformerXLLM(cfg, attn_impl="sdpa").train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randint(0, 40, (2, 81))
    _assert_same_training(*(_two_segments_backward(m, model, x) for m in (model, compiled)))


def _two_segments_backward(call, model, x, seed=None):
    """Loss summed over two 40-token segments with memory, and every parameter's gradient."""
    if seed is not None:
        torch.manual_seed(seed)
    mems, total = None, 0.0
    for s in (0, 40):
        out = call(x[:, s : s + 40], labels=x[:, s + 1 : s + 41], mems=mems)
        mems, total = out.mems, total + out.loss
    model.zero_grad()
    total.backward()
    return total.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_same_training(want, got):
    torch.testing.assert_close(got[0], want[0])
    for a, b in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("attn_type", [0, 1])
def test_training_with_dropout_same_draws_eager_and_sdpa(attn_type):
    """Training with dropout and attention dropout: ``sdpa``, ``score_attend``, ``chunked`` and
    ``auto`` (padded position scores) draw the same masks as the eager reference, so the losses
    and every gradient over two segments with memory agree."""
    cfg = TransformerXLConfig(
        vocab_size=40,
        n_layer=2,
        n_head=2,
        d_model=16,
        d_head=8,
        d_inner=32,
        dropout=0.2,
        dropatt=0.3,
        attn_type=attn_type,
        segment=SegmentSettings(tgt_len=40, mem_len=40, clamp_len=50),
    )
    torch.manual_seed(0)
    model = TransformerXLLM(cfg, attn_impl="eager").train()
    x = torch.randint(0, 40, (2, 81))
    results = []
    for impl in ("eager", "sdpa", "score_attend", "chunked", "auto"):
        model.set_attn_impl(impl)
        results.append(_two_segments_backward(model, model, x, seed=7))
    for got in results[1:]:
        _assert_same_training(results[0], got)
