"""lm-evaluation-harness 0.4: the `transformer-xl` adapter on a task defined on local files."""

import json
import math
import subprocess
import sys

import pytest
import torch

from transformer_xl.cli import main
from transformer_xl.config import TransformerXLConfig
from transformer_xl.data.tokenizer import load_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.evaluate import evaluate
from transformer_xl.generate import generate
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.segment import SegmentSettings

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402

from transformer_xl.hf.harness import TransformerXLHarness  # noqa: E402

WORDS = [f"w{i}" for i in range(30)]
DOCS = [" ".join(WORDS[(7 * k + 3 * i) % 30] for i in range(n)) for k, n in enumerate([23, 9, 40])]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    torch.manual_seed(0)
    cfg = TransformerXLConfig(
        vocab_size=32,
        n_layer=2,
        n_head=2,
        d_model=16,
        d_head=8,
        d_inner=32,
        dropout=0.0,
        segment=SegmentSettings(tgt_len=6, mem_len=8),
    )
    model = TransformerXLLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(root / "model")
    Vocab(["<eos>", "<unk>", *WORDS], "word", eos_token="<eos>", unk_token="<unk>",
          special_tokens=["<eos>", "<unk>"]).save(root / "model" / "vocab.json")  # fmt: skip
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "localppl.yaml").write_text(
        "task: localppl\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: loglikelihood_rolling\n"
        "test_split: test\n"
        'doc_to_text: ""\n'
        'doc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: word_perplexity\n"
    )
    return model, root


def txl_eval_word_ppl(model, folder):
    """`txl eval`'s scoring of each document (its evaluate(): segments of tgt_len with memory),
    the first word predicted from <eos>; perplexity over all words."""
    tok = load_tokenizer(folder)
    nll = n = 0
    for doc in DOCS:
        ids = torch.tensor([[tok.vocab.eos_id, *tok.encode(doc)]])
        segs = [(ids[:, s : s + 6], ids[:, s + 1 : s + 7]) for s in range(0, ids.shape[1] - 1, 6)]
        segs[-1] = (segs[-1][0][:, : segs[-1][1].shape[1]], segs[-1][1])
        res = evaluate(model, segs, settings=model.config.segment.replace(mem_len=8))
        nll, n = nll + res.nll_sum, n + res.tokens
    assert n == sum(len(d.split()) for d in DOCS)
    return math.exp(nll / n)


def test_word_perplexity_equals_txl_eval(setup, monkeypatch, capsys):
    model, root = setup
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    want = txl_eval_word_ppl(model, root / "model")
    args = ["lm-eval", str(root / "model"), "--tasks", "localppl",
            "--include-path", str(root / "tasks"), "--json"]  # fmt: skip
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)["localppl"]["word_perplexity,none"]
    assert abs(got - want) <= 1e-4 * want


def test_lm_eval_command_line_knows_transformer_xl(setup, tmp_path):
    _, root = setup
    cmd = [
        sys.executable,
        "-m",
        "transformer_xl.hf.harness",
        "--model",
        "transformer-xl",
        "--model_args",
        f"pretrained={root / 'model'}",
        "--tasks",
        "localppl",
        "--include_path",
        str(root / "tasks"),
        "--output_path",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_DATASETS_OFFLINE": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "word_perplexity" in done.stdout and "localppl" in done.stdout


def request(kind, *args):
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_loglikelihood_and_generate_until(setup):
    model, root = setup
    lm = TransformerXLHarness(str(root / "model"))
    tok = lm.tokenizer
    ctx, cont = "w1 w2 w3 w4 w5 w6 w7", " w8 w9"
    ((total, greedy),) = lm.loglikelihood([request("loglikelihood", ctx, cont)])
    ids = torch.tensor([[0, *tok.encode(ctx), *tok.encode(cont)]])
    with torch.no_grad():
        lp = model(ids[:, :6], return_log_probs=True)
        lp2 = model(ids[:, 6:-1], mems=lp.mems, return_log_probs=True)
    logp = torch.cat([lp.log_probs, lp2.log_probs], dim=1)[0]
    want = logp[7, ids[0, 8]] + logp[8, ids[0, 9]]
    assert abs(total - want.item()) <= 1e-5
    assert greedy == bool(logp[7].argmax() == ids[0, 8] and logp[8].argmax() == ids[0, 9])
    prompt = [0, *tok.encode(ctx)]
    expected = tok.decode(generate(model, [prompt], 5, temperature=0, prompt_chunk_len=6)[0])
    (text,) = lm.generate_until([request("generate_until", ctx, {"max_gen_toks": 5})])
    assert text == expected
    stop = expected.split()[1]
    (cut,) = lm.generate_until(
        [request("generate_until", ctx, {"until": [stop], "max_gen_toks": 5})]
    )
    assert cut == expected.split(stop)[0]
