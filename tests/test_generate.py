"""Sampling, generation with memory, streaming text output and ``txl generate``."""

from __future__ import annotations

import pytest
import torch

from test_incremental import tiny_model
from transformer_xl.cli import main
from transformer_xl.data.tokenizer import load_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.generate import (
    Sampler,
    StreamingLM,
    TextStreamer,
    filter_top_k,
    filter_top_p,
    generate,
    generate_iter,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- filters and sampler
def test_top_k_matches_loop():
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
    for k in (1, 3, 29):
        got = filter_top_k(logits, k)
        for row, out in zip(logits, got, strict=True):
            keep = set(sorted(range(30), key=lambda j: -row[j])[:k])
            assert {j for j in range(30) if out[j] > float("-inf")} == keep
            assert all(out[j] == row[j] for j in keep)
    assert torch.equal(filter_top_k(logits, 0), logits)


def test_top_p_matches_loop():
    logits = 2 * torch.randn(5, 20, generator=torch.Generator().manual_seed(1))
    for p in (0.05, 0.5, 0.9, 0.999):
        got = filter_top_p(logits, p)
        for row, out in zip(logits, got, strict=True):
            probs = torch.softmax(row.double(), -1).tolist()
            keep, mass = set(), 0.0
            for j in sorted(range(20), key=lambda j: -probs[j]):
                keep.add(j)
                mass += probs[j]
                if mass >= p:
                    break
            assert {j for j in range(20) if out[j] > float("-inf")} == keep, p
    assert torch.equal(filter_top_p(logits, 1.0), logits)


def test_sampler_draws_from_the_distribution_and_is_seeded():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    log_probs = probs.log().expand(20000, 4)
    draws = Sampler(seed=0)(log_probs)
    freq = torch.bincount(draws, minlength=4).double() / 20000
    assert (freq - probs).abs().max() < 0.02
    assert torch.equal(draws, Sampler(seed=0)(log_probs))
    assert not torch.equal(draws, Sampler(seed=1)(log_probs))
    assert set(Sampler(top_k=2, seed=0)(log_probs).tolist()) == {0, 1}
    assert set(Sampler(top_p=0.6, seed=0)(log_probs).tolist()) == {0, 1}
    cold = torch.bincount(Sampler(temperature=0.3, seed=0)(log_probs), minlength=4)
    assert cold[0] > 0.8 * 20000  # a low temperature sharpens
    assert Sampler(temperature=0)(log_probs[:3]).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=-2), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
    ],
)
def test_sampler_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampler(**kwargs)


# ---------------------------------------------------------------------- generation
def reference_generation(model, prompt, n, sampler, *, chunk, settings):
    """Recompute with ``model(...)``: prompt in chunks of ``chunk``, then one token at a time."""
    mems, x = None, torch.tensor([prompt])
    with torch.no_grad():
        for s in range(0, x.shape[1], chunk):
            out = model(x[:, s : s + chunk], mems=mems, settings=settings, return_log_probs=True)
            mems = out.mems
        tokens = []
        for _ in range(n):
            tokens.append(sampler(out.log_probs[:, -1]))
            out = model(tokens[-1][:, None], mems=mems, settings=settings, return_log_probs=True)
            mems = out.mems
    return torch.stack(tokens, dim=1)


@pytest.mark.parametrize(
    "sampling", [dict(temperature=0), dict(temperature=0.9, top_k=10, top_p=0.95)]
)
def test_generation_equals_recomputation_with_a_long_prompt(sampling):
    model = tiny_model(std=0.2, same_length=True, clamp_len=8)
    prompt = torch.randint(0, 40, (37,), generator=torch.Generator().manual_seed(2)).tolist()
    run = model.config.segment.replace(mem_len=6, same_length=True, clamp_len=8)
    got = generate(model, prompt, 25, settings=run, seed=3, prompt_chunk_len=4, **sampling)
    ref = reference_generation(
        model, prompt, 25, Sampler(seed=3, **sampling), chunk=4, settings=run
    )
    assert torch.equal(got, ref)
    if sampling["temperature"] > 0:  # (greedy decoding of random weights repeats one token)
        assert len(set(got[0].tolist())) > 5


def test_num_samples_batches_and_eos():
    model = tiny_model(std=0.2)
    prompts = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(4))
    out = generate(model, prompts, 12, seed=0, num_samples=3)
    assert out.shape == (6, 12)
    greedy = generate(model, prompts, 12, temperature=0, num_samples=3)
    assert torch.equal(greedy[0], greedy[2]) and torch.equal(greedy[3], greedy[5])
    assert torch.equal(greedy[[0, 3]], generate(model, prompts, 12, temperature=0))
    assert torch.equal(out, generate(model, prompts, 12, seed=0, num_samples=3))
    eos = int(out[0, 0])
    stopped = generate(model, prompts, 12, seed=0, num_samples=3, eos_id=eos)
    first_stop = (stopped == eos).float().argmax(dim=1)
    for row, k in enumerate(first_stop.tolist()):
        if (stopped[row] == eos).any():
            assert (stopped[row, k:] == eos).all()  # a finished row only repeats eos
    steps = list(generate_iter(model, [1, 2], 5, temperature=0))
    assert len(steps) == 5 and steps[0].shape == (1,)
    assert generate(model, [1, 2], 0).shape == (1, 0)
    with pytest.raises(ValueError, match="prompt"):
        generate(model, [], 3)


def test_ragged_prompts_and_the_model_method():
    model = tiny_model(std=0.2)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [5, 3], [5, 8, 9, 7]]
    together = generate(
        model,
        prompts,
        10,
        settings=model.config.segment.replace(mem_len=5),
        temperature=0,
        prompt_chunk_len=3,
    )
    for row, p in enumerate(prompts):
        alone = generate(
            model,
            p,
            10,
            settings=model.config.segment.replace(mem_len=5),
            temperature=0,
            prompt_chunk_len=3,
        )
        assert torch.equal(together[row], alone[0])
    assert torch.equal(
        model.generate(
            prompts,
            10,
            settings=model.config.segment.replace(mem_len=5),
            temperature=0,
            prompt_chunk_len=3,
        ),
        together,
    )


def test_memory_is_bounded_while_generating():
    model = tiny_model(std=0.2)
    stream = StreamingLM(model, 1, settings=model.config.segment.replace(mem_len=9))
    for t in range(300):
        stream.feed(torch.tensor([[t % 40]]))
        assert int(stream.memory_lengths[0]) == min(t + 1, 9)
    assert stream.kv.capacity <= 9 + 128
    assert generate(
        model, list(range(30)), 300, settings=model.config.segment.replace(mem_len=9), seed=0
    ).shape == (1, 300)


# ---------------------------------------------------------------------- text
def test_text_streamer_holds_partial_utf8_and_keeps_separators():
    byte_vocab = Vocab([str(i) for i in range(256)], "byte")
    decode = lambda ids: bytes(int(t) for t in byte_vocab.decode_ids(ids)).decode(
        "utf-8", errors="replace"
    )
    text = "naïve ☃ ok"
    ids = list(text.encode("utf-8"))
    streamer = TextStreamer(decode, context=list(b"say: "))
    pieces = [streamer.push(t) for t in ids] + [streamer.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[ids.index(0xE2)] == ""  # the snowman's first byte waits for the rest

    words = Vocab(["<eos>", "the", "cat", "sat"], "word", eos_token="<eos>")
    dec = lambda ids: " ".join(words.decode_ids(ids))
    streamer = TextStreamer(dec, context=[1])
    assert [streamer.push(t) for t in (2, 3)] == [" cat", " sat"]


# ---------------------------------------------------------------------- command line
@pytest.fixture()
def byte_model(tmp_path):
    model = tiny_model(std=0.2, vocab_size=256, tgt_len=8, mem_len=16)
    model.save_pretrained(tmp_path)
    Vocab([str(i) for i in range(256)], "byte").save(tmp_path / "vocab.json")
    return model, tmp_path


def test_cli_streams_the_generated_text(byte_model, capsys):
    model, folder = byte_model
    prompt = "Transformer-XL reads a long prompt in segments. " * 3  # longer than tgt_len
    args = ["generate", str(folder), "--prompt", prompt, "--max-new-tokens", "30", "--seed", "5"]
    assert main(args + ["--top-k", "20"]) == 0
    text = capsys.readouterr().out
    tok = load_tokenizer(folder)
    ids = generate(model, tok.encode(prompt), 30, seed=5, top_k=20, prompt_chunk_len=8)
    assert text == tok.decode(ids[0].tolist()) + "\n"

    assert main(args + ["--top-k", "20", "--ids"]) == 0
    assert capsys.readouterr().out.split() == [str(t) for t in ids[0].tolist()]

    pfile = folder / "prompt.txt"
    pfile.write_text(prompt, encoding="utf-8")
    assert main(["generate", str(folder), "--prompt-file", str(pfile), "--max-new-tokens", "4",
                 "--num-samples", "2", "--seed", "0"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "--- sample 1 ---" in out and "--- sample 2 ---" in out


TEXT = "the cat sat on the mat\nand the dog sat on the cat\n" * 2


def _save_tokenizer(kind: str, folder):
    """A tokenizer of each kind the data pipeline supports, saved into ``folder``."""
    from transformer_xl.data.tokenizer import BPETokenizer, make_tokenizer, save_tokenizer

    if kind == "bpe":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=280, initial_alphabet=alphabet, show_progress=False
        )
        hf.train_from_iterator([TEXT] * 20, trainer)
        vocab = Vocab([hf.id_to_token(i) for i in range(hf.get_vocab_size())], "bpe")
        tok = BPETokenizer(vocab, hf)
    else:
        symbols = {
            "byte": [str(i) for i in range(256)],
            "char": ["<eos>", *sorted(set(TEXT) - {"\n"}), "é"],
            "word": ["<eos>", "<unk>", *sorted(set(TEXT.split()))],
        }[kind]
        eos = None if kind == "byte" else "<eos>"
        unk = "<unk>" if kind == "word" else None
        tok = make_tokenizer(Vocab(symbols, kind, eos_token=eos, unk_token=unk))
    save_tokenizer(tok, folder)
    return load_tokenizer(folder)


@pytest.mark.parametrize("kind", ["byte", "char", "word", "bpe"])
def test_cli_decodes_every_tokenizer(tmp_path, capsys, kind):
    tok = _save_tokenizer(kind, tmp_path)
    model = tiny_model(std=0.2, vocab_size=len(tok.vocab))
    model.save_pretrained(tmp_path)
    argv = ["generate", str(tmp_path), "--prompt", TEXT, "--max-new-tokens", "15", "--seed", "0"]
    assert main([*argv, "--tgt-len", "5"]) == 0
    prompt = tok.encode(TEXT)
    ids = generate(model, prompt, 15, seed=0, prompt_chunk_len=5)[0].tolist()
    context = prompt[-8:]  # what the streamer decodes the continuation against
    expected = tok.decode(context + ids)[len(tok.decode(context)) :]
    assert capsys.readouterr().out == expected + "\n"
    eos = tok.vocab.eos_id
    if eos is not None:  # --stop-at-eos: nothing after the first end-of-sentence token
        assert main([*argv, "--stop-at-eos", "--ids"]) == 0
        out = [int(t) for t in capsys.readouterr().out.split()]
        assert eos not in out[:-1]


def test_cli_prompt_ids_without_tokenizer(tmp_path, capsys):
    tiny_model(std=0.2).save_pretrained(tmp_path)
    assert main(["generate", str(tmp_path), "--prompt-ids", "1 2 3", "--max-new-tokens", "6",
                 "--temperature", "0"]) == 0  # fmt: skip
    out = capsys.readouterr().out.split()
    assert len(out) == 6 and all(0 <= int(t) < 40 for t in out)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--prompt", "hi"], "no vocab.json"),
        (["--prompt-ids", "1 x"], "--prompt-ids"),
        (["--prompt-ids", "1 99"], "outside"),
        (["--prompt-ids", "1", "--top-p", "2"], "top_p"),
        (["--prompt-ids", "1", "--mem-len", "-1"], "--mem-len=-1"),
        (["--prompt-ids", "1", "--tgt-len", "0"], "--tgt-len=0"),
        (["--prompt-file", "missing.txt"], "missing.txt"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, extra, match):
    tiny_model().save_pretrained(tmp_path / "m")
    if extra[0] == "--prompt-file":
        extra = ["--prompt-file", str(tmp_path / extra[1])]
        Vocab([str(i) for i in range(40)], "byte").save(tmp_path / "m" / "vocab.json")
    assert main(["generate", str(tmp_path / "m"), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err, err


def test_cli_missing_model_folder(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nope"), "--prompt-ids", "1"]) == 2
    assert "nope" in capsys.readouterr().err
