"""Test helpers: miniature archives in the exact distributed layouts, a local HTTP server with
Range support, and the authors' preprocessing written out naively as a reference."""

from __future__ import annotations

import io
import tarfile
import threading
import zipfile
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def sample_text(n_chars: int, seed: int = 0) -> str:
    """English-like text with newlines, punctuation, digits and some non-ASCII, from CPython's
    bundled help topics."""
    from pydoc_data.topics import topics

    base = "\n".join(topics[k] for k in sorted(topics)) + "\nnaïve café — ünïcödé ☃ İstanbul Σ\n"
    rot = seed * 7919 % len(base)
    base = base[rot:] + base[:rot]
    return (base * (n_chars // len(base) + 1))[:n_chars]


def zip_members(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def tar_members(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def make_enwik8_zip(path: Path, data: bytes) -> Path:
    return zip_members(path, {"enwik8": data})


def make_text8_zip(path: Path, text: str) -> Path:
    return zip_members(path, {"text8": text.encode("utf-8")})


def make_wikitext_zip(path: Path, size: str, splits: dict[str, str]) -> Path:
    return zip_members(
        path, {f"wikitext-{size}/wiki.{s}.tokens": t.encode() for s, t in splits.items()}
    )


def make_ptb_tgz(path: Path, words: dict[str, str], chars: dict[str, str]) -> Path:
    members = {"./simple-examples/README": b"readme\n"}
    for s, t in words.items():
        members[f"./simple-examples/data/ptb.{s}.txt"] = t.encode()
    for s, t in chars.items():
        members[f"./simple-examples/data/ptb.char.{s}.txt"] = t.encode()
    return tar_members(path, members)


LM1B = "1-billion-word-language-modeling-benchmark-r13output"


def make_lm1b_tgz(path: Path, train_shards: list[str], heldout: list[str]) -> Path:
    members = {f"{LM1B}/README": b"readme\n"}
    for k, t in enumerate(heldout):
        members[
            f"{LM1B}/heldout-monolingual.tokenized.shuffled/news.en.heldout-{k:05d}-of-00050"
        ] = t.encode()
    for k, t in enumerate(train_shards, 1):
        members[f"{LM1B}/training-monolingual.tokenized.shuffled/news.en-{k:05d}-of-00100"] = (
            t.encode()
        )
    return tar_members(path, members)


def ptb_like(text: str, n_lines: int, seed: int = 0) -> str:
    """PTB's look: a leading space, lower-case words, one sentence per line."""
    words = text.lower().split()
    lines = []
    for i in range(n_lines):
        k = (i * 13 + seed * 31) % max(len(words) - 20, 1)
        lines.append(" " + " ".join(words[k : k + 3 + (i * 7 + seed) % 15]))
    return "\n".join(lines) + "\n"


def ptb_char_like(word_text: str) -> str:
    return (
        "\n".join(
            " ".join(" _ ".join(" ".join(w) for w in line.split()).split())
            for line in word_text.splitlines()
        )
        + "\n"
    )


# ------------------------------------------------------------------ authors' pipeline (naive)
class AuthorsVocab:
    """The authors' utils/vocabulary.py behaviour, written out for comparison."""

    def __init__(self, special=(), lower_case=True):
        self.counter, self.special, self.lower_case = Counter(), list(special), lower_case

    def tokenize(self, line, add_eos=False, add_double_eos=False):
        line = line.strip()
        if self.lower_case:
            line = line.lower()
        symbols = line.split()
        if add_double_eos:
            return ["<S>", *symbols, "<S>"]
        return symbols + ["<eos>"] if add_eos else symbols

    def count_file(self, path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                self.counter.update(self.tokenize(line))

    def build(self):
        self.idx2sym = []
        for sym in self.special:
            if sym not in self.idx2sym:
                self.idx2sym.append(sym)
        for sym, _ in self.counter.most_common():
            if sym not in self.idx2sym:
                self.idx2sym.append(sym)
        self.sym2idx = {s: i for i, s in enumerate(self.idx2sym)}

    def encode_file(self, path, add_eos=True, add_double_eos=False, unk=None):
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                out.append(
                    [self.sym2idx.get(s, unk) for s in self.tokenize(line, add_eos, add_double_eos)]
                )
        return out


def authors_char_corpus(tmp: Path, raw, kind: str, tail: int):
    """prep_enwik8.py / prep_text8.py then Corpus(...) for enwik8/text8: returns (idx2sym,
    {split: ids})."""
    tmp.mkdir(parents=True, exist_ok=True)
    if kind == "enwik8":
        data = raw
    else:
        (tmp / "text8").write_bytes(raw)
        with open(tmp / "text8", encoding="utf-8") as f:
            data = f.read()
    parts = {"train": data[: -2 * tail], "valid": data[-2 * tail : -tail], "test": data[-tail:]}
    for s, part in parts.items():
        if kind == "enwik8":
            text = " ".join(str(c) if c != ord("\n") else "\n" for c in part)
        else:
            text = " ".join("_" if c == " " else c for c in part.strip())
        with open(tmp / f"{s}.txt", "w", encoding="utf-8") as f:
            f.write(text)
    v = AuthorsVocab()
    for s in parts:
        v.count_file(tmp / f"{s}.txt")
    v.build()
    ids = {
        s: [i for line in v.encode_file(tmp / f"{s}.txt", add_eos=False) for i in line]
        for s in parts
    }
    return v.idx2sym, ids


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves a folder with single-range ``Range: bytes=N-`` support, logging what it was asked."""

    log: list = []
    honour_range = True

    def do_GET(self):  # noqa: N802 - http.server naming
        path = Path(self.translate_path(self.path))
        self.log.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng and self.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            body = data[start:]
        else:
            self.send_response(200)
            body = data
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class LocalServer:
    def __init__(self, folder: Path, honour_range: bool = True):
        handler = type("H", (RangeHandler,), {"log": [], "honour_range": honour_range})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
