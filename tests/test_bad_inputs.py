"""Every path a user walks ends well: folder kinds, one flag vocabulary, files that honour the
umask, and bad input that ends with exit 2 and one line naming what was wrong (nothing lost,
nothing half-written)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from test_incremental import tiny_model
from transformer_xl.cli import build_parser, error_line, main
from transformer_xl.data import load_prepared
from transformer_xl.data.vocab import Vocab
from transformer_xl.run.resolve import ForeignModelError, resolve_model
from transformer_xl.train.data import builtin_sections, prepare_texts
from transformer_xl.train.run import train

SMALL = [
    "model.n_layer=2", "model.d_model=32", "model.n_head=2", "model.d_head=16",
    "model.d_inner=64", "batch_size=4", "tgt_len=16", "mem_len=16", "eval_tgt_len=8",
    "eval_mem_len=24", "eval_batch_size=3", "eval_interval=0", "threads=1", "sample_tokens=0",
    "final_eval_split=", "checkpoint_interval=2",
]  # fmt: skip
TEXT = "the cat sat on the mat\nand the dog sat on the cat\n" * 40


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder trained for 2 steps (a best model and one checkpoint) and its data."""
    root = tmp_path_factory.mktemp("run")
    text = "\n\n".join(builtin_sections()[:6])
    n = len(text)
    parts = {"train": text[: n - 2000], "valid": text[n - 2000 : n - 1000], "test": text[-1000:]}
    data = prepare_texts(root / "data", parts, dataset="docs-tiny")
    train(preset="tiny", out=str(root / "run"), overrides=SMALL, data=str(data), max_steps=2,
          stream=io.StringIO())  # fmt: skip
    return root / "run", data


def txl(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors (exit 2 with the usage and one line)
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    """The error's one line (progress or warning lines before it are allowed)."""
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err and err.rstrip().endswith(lines[0]), err
    return lines[0]


@pytest.fixture()
def byte_model(tmp_path):
    folder = tmp_path / "m"
    tiny_model(std=0.2, vocab_size=256, tgt_len=8, mem_len=16).save_pretrained(folder)
    Vocab([str(i) for i in range(256)], "byte").save(folder / "vocab.json")
    return folder


# ------------------------------------------------------------------------ folder kinds
def test_generate_accepts_run_checkpoint_and_model_folders(run, capsys):
    run_dir, _ = run
    args = ["--prompt-ids", "1 2 3", "--max-new-tokens", "5", "--temperature", "0", "--ids"]
    code, from_best, _ = txl(capsys, "generate", run_dir / "best", *args)
    assert code == 0 and len(from_best.split()) == 5
    assert txl(capsys, "generate", run_dir, *args)[:2] == (0, from_best)
    (step,) = (run_dir / "checkpoints").glob("step-*")
    code, from_ckpt, _ = txl(capsys, "generate", step, *args)
    assert code == 0 and len(from_ckpt.split()) == 5
    assert resolve_model(step).model_dir == step / "model"
    assert resolve_model(step).run_dir == run_dir
    assert resolve_model(run_dir).model_dir == run_dir / "best"


def test_run_without_best_uses_its_newest_checkpoint(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run[0], copy, ignore=shutil.ignore_patterns("best"))
    (step,) = (copy / "checkpoints").glob("step-*")
    assert resolve_model(copy).model_dir == step / "model"


def test_eval_accepts_a_checkpoint_folder_with_the_runs_settings(run, capsys):
    run_dir, _ = run
    (step,) = (run_dir / "checkpoints").glob("step-*")
    code, out, err = txl(capsys, "eval", step, "--json")
    assert code == 0, err
    assert json.loads(out)["settings"]["mem_len"] == 24  # the run's eval_mem_len


def test_fresh_run_folder_says_it_has_no_model_yet(run, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text((run[0] / "config.json").read_text())
    code, _, err = txl(capsys, "generate", tmp_path / "r", "--prompt-ids", "1")
    assert code == 2 and "no saved model yet" in one_error_line(err)


def _hf_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "transfo-xl", "d_model": 8}))
    return path


@pytest.mark.parametrize("fmt", ["hf", "tf", "tf-file", "original", "original-file"])
def test_foreign_folders_get_the_convert_command(tmp_path, capsys, fmt):
    src = tmp_path / "foreign"
    if fmt == "hf":
        _hf_folder(src)
    elif fmt == "tf":
        (src / "model").mkdir(parents=True)
        (src / "model" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-0"\n')
        (src / "model" / "model.ckpt-0.index").write_bytes(b"")
    elif fmt == "tf-file":
        src.mkdir()
        (src / "model.ckpt-0.index").write_bytes(b"")
        src = src / "model.ckpt-0"
    elif fmt == "original":
        src.mkdir()
        torch.save({"w": torch.zeros(1)}, src / "model.pt")
    else:
        src.mkdir()
        torch.save({"w": torch.zeros(1)}, src / "model.pt")
        src = src / "model.pt"
    way = fmt.split("-")[0]
    with pytest.raises(ForeignModelError) as info:
        resolve_model(src)
    assert info.value.format == way
    for command in ("generate", "eval"):
        code, _, err = txl(capsys, command, src, *(["--prompt-ids", "1"] * (command == "generate")))
        line = one_error_line(err)
        assert code == 2 and f"txl convert --from {way} {src} " in line, line


def test_not_a_model_folder_at_all(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    code, _, err = txl(capsys, "generate", tmp_path / "x", "--prompt-ids", "1")
    assert code == 2 and "not a model folder" in one_error_line(err)
    code, _, err = txl(capsys, "generate", tmp_path / "nope", "--prompt-ids", "1")
    assert code == 2 and "no such file or folder" in one_error_line(err)


# ------------------------------------------------------------------------ flags
def test_device_names(byte_model, capsys):
    code, _, err = txl(capsys, "generate", byte_model, "--prompt-ids", "1", "--device", "gpu")
    assert code == 2 and "auto, cpu, cuda" in err and str(byte_model) not in err
    missing = "cuda:99" if torch.cuda.is_available() else "cuda"
    code, _, err = txl(capsys, "generate", byte_model, "--prompt-ids", "1", "--device", missing)
    line = one_error_line(err)
    assert code == 2 and f"--device {missing}" in line
    assert ("CUDA device(s)" if torch.cuda.is_available() else "CUDA is not available") in line
    code, _, err = txl(capsys, "eval", byte_model, "--device", missing)
    assert code == 2 and f"--device {missing}" in one_error_line(err)


def test_flags_are_spelled_alike_everywhere():
    parser = build_parser()
    for command in ("eval", "generate", "bench", "train"):
        sub = _subparsers(parser)[command]
        flags = {s for a in sub._actions for s in a.option_strings}
        assert {"--device", "--threads"} <= flags, command
        if command != "generate":
            assert {"--precision", "--batch-size"} <= flags, command
    old = parser.parse_args(["bench", "--dtype", "bfloat16", "--batch", "3"])
    assert (old.precision, old.batch_size, old.device) == ("bf16", 3, "auto")
    args = parser.parse_args(["train", "--device", "cpu", "--batch-size", "4", "--threads", "2"])
    from transformer_xl.commands.common import shared_settings

    assert shared_settings(args) == ["train.device=cpu", "train.batch_size=4", "train.threads=2"]
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["eval", "m", "--batch-size", "0"])
    assert e.value.code == 2


def _subparsers(parser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _all_parsers(parser, prefix=()):
    yield prefix, parser
    for name, sub in _subparsers(parser).items():
        yield from _all_parsers(sub, (*prefix, name))


def test_every_help_text_is_plain():
    seen = 0
    for names, parser in _all_parsers(build_parser()):
        text = parser.format_help()
        seen += 1
        for markup in ("``", ":func:", ":class:", ":mod:", ":meth:", "`"):
            assert markup not in text, (names, markup, text)
    assert seen > 15  # txl, every command, every prepare dataset


def test_version(capsys):
    from transformer_xl import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"txl {__version__}"


def test_os_errors_name_their_path():
    e = FileNotFoundError(2, "No such file or directory", "/data/x.txt")
    assert error_line(e) == "/data/x.txt: No such file or directory"
    assert error_line(PermissionError(13, "Permission denied", "/a", None, "/b")) == (
        "/a -> /b: Permission denied"
    )


# ------------------------------------------------------------------------ weights and configs
def _rewrite_weights(folder: Path, change) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


@pytest.mark.parametrize("how", ["nan", "inf", "int64"])
def test_corrupt_weight_values_are_named(byte_model, run, capsys, how):
    name = "word_emb.emb_layers.0.weight"

    def change(t):
        key = name if name in t else sorted(t)[0]
        if how == "int64":
            t[key] = t[key].to(torch.int64)
        else:
            t[key] = torch.full_like(t[key], float(how))

    _rewrite_weights(byte_model, change)
    code, _, err = txl(capsys, "generate", byte_model, "--prompt-ids", "1 2")
    line = one_error_line(err)
    assert code == 2 and "model.safetensors" in line and "tensor '" in line
    assert ("int64" if how == "int64" else "NaN or infinite") in line
    code, out, err = txl(capsys, "eval", byte_model, "--data", run[1])
    assert code == 2 and "nan" not in out and "tensor '" in one_error_line(err)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "expected a readable safetensors"),
        (lambda p: p.write_bytes(b""), "expected a readable safetensors"),
        (lambda p: p.write_bytes(struct.pack("<Q", 2**40) + b"{}"), "a readable safetensors"),
        (lambda p: p.unlink(), "weights file is missing"),
    ],
)
def test_damaged_weights_file(byte_model, capsys, damage, expected):
    damage(byte_model / "model.safetensors")
    code, _, err = txl(capsys, "generate", byte_model, "--prompt-ids", "1")
    assert code == 2 and expected in one_error_line(err)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"d_model": 8}', "vocab_size"),
        (b"\xff\xfe", "config.json"),
    ],
)
def test_damaged_config(byte_model, capsys, text, expected):
    path = byte_model / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = txl(capsys, "generate", byte_model, "--prompt-ids", "1")
    assert code == 2 and expected in one_error_line(err) and "config.json" in err


def test_vocab_of_another_size_is_detected(byte_model, capsys):
    Vocab([str(i) for i in range(200)], "byte").save(byte_model / "vocab.json")
    code, _, err = txl(capsys, "generate", byte_model, "--prompt", "hi")
    line = one_error_line(err)
    assert code == 2 and "vocab.json" in line and "200" in line and "256" in line


# ------------------------------------------------------------------------ prompts
def test_prompt_problems(byte_model, tmp_path, capsys):
    base = ["generate", byte_model, "--max-new-tokens", "2"]
    for extra, expected in [
        (["--prompt-ids", "1 256"], "outside the model's vocabulary"),
        (["--prompt-ids", "-1"], "outside the model's vocabulary"),
        (["--prompt-ids", "1,x"], "expected integers"),
        (["--prompt", ""], "empty"),
        (["--prompt-file", tmp_path / "none.txt"], "none.txt"),
    ]:
        code, _, err = txl(capsys, *base, *extra)
        assert code == 2 and expected in one_error_line(err), (extra, err)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    code, _, err = txl(capsys, *base, "--prompt-file", bad)
    assert code == 2 and "latin1.txt" in one_error_line(err) and "UTF-8" in err


def test_prompt_with_unknown_words(tmp_path, capsys):
    folder = tmp_path / "w"
    words = ["<eos>", "<unk>", *sorted(set(TEXT.split()))]
    Vocab(words, "word", eos_token="<eos>", unk_token="<unk>").save(tmp_path / "vocab.json")
    tiny_model(std=0.2, vocab_size=len(words)).save_pretrained(folder)
    (tmp_path / "vocab.json").rename(folder / "vocab.json")
    code, out, err = txl(capsys, "generate", folder, "--prompt", "the zebra sat", "--ids",
                         "--max-new-tokens", "2")  # fmt: skip
    assert code == 0 and len(out.split()) == 2
    assert "1 prompt token(s) are not in the vocabulary and became <unk>" in err
    chars = tmp_path / "c"
    Vocab(["a", "b", " "], "char").save(tmp_path / "vocab.json")
    tiny_model(std=0.2, vocab_size=3).save_pretrained(chars)
    (tmp_path / "vocab.json").rename(chars / "vocab.json")
    code, _, err = txl(capsys, "generate", chars, "--prompt", "abz")
    assert code == 2 and "'z'" in one_error_line(err)


# ------------------------------------------------------------------------ prepared data
def test_ids_outside_the_vocabulary_are_refused_at_load(run, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(run[1], data)
    meta = json.loads((data / "meta.json").read_text())
    # a word-sized vocabulary shrunk below the ids stored: byte ids up to 255 in a 100-token vocab
    vocab = Vocab([str(i) for i in range(100)], "byte")
    vocab.save(data / "vocab.json")
    meta.update(vocab_size=100, vocab_sha256=vocab.fingerprint())
    (data / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"train\.bin: token id \d+ at position [\d,]+ is outside"):
        load_prepared(data)  # checked with the checksums, on first use
    ds = load_prepared(data, verify=False)
    with pytest.raises(ValueError, match=r"train\.bin: token id \d+ at position [\d,]+ is outside"):
        ds.split("train")
    small = tmp_path / "small"
    tiny_model(std=0.2, vocab_size=100).save_pretrained(small)
    code, _, err = txl(capsys, "eval", small, "--data", data, "--split", "valid")
    assert code == 2 and re.search(r"(train|valid)\.bin: token id", one_error_line(err))


@pytest.mark.parametrize(
    "field, value, expected",
    [
        (
            "file",
            "../../etc/passwd",
            "field splits.train.file: got '../../etc/passwd', expected "
            "a plain file name inside the folder",
        ),
        ("file", 3, "field splits.train.file: got 3, expected a string"),
        ("tokens", -1, "field splits.train.tokens: got -1, expected >= 0"),
        ("tokens", "12", "field splits.train.tokens: got '12', expected an integer"),
    ],
)
def test_meta_json_entries(run, tmp_path, field, value, expected):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(run[1], data)
    meta = json.loads((data / "meta.json").read_text())
    meta["splits"]["train"][field] = value
    (data / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_prepared(data)


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(TEXT)
    return corpus


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_prepare_never_deletes_its_input(tmp_path, capsys, where):
    corpus = _corpus(tmp_path)
    out = {"same": corpus, "inside": corpus / "prepared", "around": tmp_path}[where]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = txl(capsys, "prepare", "text", "--train", corpus, "--out", out, "--force")
    assert code == 2 and "overlaps the input" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (corpus / "a.txt").read_text() == TEXT


def test_prepare_benchmark_archive_inside_out(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    archive = out / "enwik8.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("enwik8", b"x" * 5000)
    code, _, err = txl(capsys, "prepare", "enwik8", "--source", archive, "--out", out, "--force",
                       "--valid-size", "100", "--test-size", "100")  # fmt: skip
    assert code == 2 and "overlaps the input" in one_error_line(err) and archive.is_file()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partial_folders_are_cleaned(tmp_path, capsys):
    corpus = _corpus(tmp_path)
    out = tmp_path / "ds"
    dead = tmp_path / f".ds.partial-{_dead_pid()}"
    live = tmp_path / f".ds.partial-{os.getppid()}"
    for p in (dead, live):
        p.mkdir()
        (p / "train.bin").write_bytes(b"\0" * 10)
    code, _, err = txl(capsys, "prepare", "text", "--train", corpus, "--out", out, "--quiet")
    assert code == 0, err
    assert not dead.exists() and live.is_dir() and load_prepared(out).num_tokens("train") > 0


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--max-size", "-1"], "--max-size"),
        (["--min-freq", "-3"], "--min-freq"),
        (["--max-size", "0"], "--max-size"),
        (["--vocab-size", "0", "--tokenizer", "bpe"], "--vocab-size"),
    ],
)
def test_negative_vocabulary_limits(tmp_path, capsys, extra, expected):
    corpus = _corpus(tmp_path)
    code, _, err = txl(capsys, "prepare", "text", "--train", corpus, "--out", tmp_path / "o",
                       "--tokenizer", "word", *extra)  # fmt: skip
    assert code == 2 and expected in one_error_line(err) and not (tmp_path / "o").exists()


def test_prepare_text_inputs(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"abc\x00def\n" * 10)
    notutf8 = tmp_path / "l1.txt"
    notutf8.write_bytes("caf\xe9\n".encode("latin-1") * 50)
    (tmp_path / "folder").mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, expected in [
        (["--train", empty], "empty"),
        (["--train", binary], "NUL byte"),
        (["--train", notutf8, "--tokenizer", "word"], "not UTF-8"),
        (["--train", tmp_path / "missing"], "no such file"),
        (["--train", tmp_path / "folder"], "holds no files"),
        (["--train", _corpus(tmp_path), "--out", afile], "not a folder"),
        (["--train", tmp_path / "corpus", "--valid-fraction", "0.7"], "--valid-fraction"),
    ]:
        if "--out" not in argv:
            argv = [*argv, "--out", tmp_path / "o"]
        code, _, err = txl(capsys, "prepare", "text", *argv)
        assert code == 2 and expected in one_error_line(err), (argv, err)
        assert not (tmp_path / "o").exists()
    assert afile.read_text() == "x"


def test_ctrl_c_during_prepare_leaves_nothing(tmp_path, capsys, monkeypatch):
    import transformer_xl.data.text as text

    corpus = _corpus(tmp_path)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(text, "_encode_split", interrupted)
    code, _, err = txl(capsys, "prepare", "text", "--train", corpus, "--out", tmp_path / "o")
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def _encrypted_zip(path: Path, member: str, data: bytes) -> Path:
    """A stored zip whose member carries the 'encrypted' flag (zipfile cannot write one)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
    raw = bytearray(path.read_bytes())
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = raw.find(sig)
        raw[i + flag_at] |= 0x1
    path.write_bytes(bytes(raw))
    return path


def test_encrypted_zip_member(tmp_path, capsys):
    archive = _encrypted_zip(tmp_path / "enwik8.zip", "enwik8", b"hello world\n" * 500)
    code, _, err = txl(capsys, "prepare", "enwik8", "--source", archive, "--out", tmp_path / "o",
                       "--valid-size", "100", "--test-size", "100")  # fmt: skip
    line = one_error_line(err)
    assert code == 2 and "'enwik8' is encrypted" in line and "enwik8.zip" in line
    assert not (tmp_path / "o").exists() and archive.is_file()


# ------------------------------------------------------------------------ umask
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_honour_the_umask(tmp_path, capsys, mask):
    old = os.umask(mask)
    try:
        model = tmp_path / "model"
        m = tiny_model(vocab_size=256)
        m.save_pretrained(model)
        Vocab([str(i) for i in range(256)], "byte").save(model / "vocab.json")
        hf = tmp_path / "hf"
        assert main(["convert", "--to", "hf", str(model), str(hf)]) == 0
        back = tmp_path / "back"
        assert main(["convert", "--from", "hf", str(hf), str(back)]) == 0
        data = tmp_path / "data"
        corpus = _corpus(tmp_path)
        assert main(["prepare", "text", "--train", str(corpus), "--out", str(data), "--quiet"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    for folder in (model, hf, back, data):
        files = {p.stat().st_mode & 0o777 for p in folder.rglob("*") if p.is_file()}
        assert files == {0o666 & ~mask}, (folder, sorted(map(oct, files)))
        assert folder.stat().st_mode & 0o777 == 0o777 & ~mask, folder
