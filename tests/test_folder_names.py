"""Every file name of a run folder, a checkpoint, a model folder and a prepared dataset is
spelled in its owner's module only (``RunFolder``, ``model_folder``, ``data/prepared``; an HF
folder's names in ``convert/hf_files``): elsewhere in ``src/`` code asks the owner. Docstrings
may name the files; code (messages included) may not."""

from __future__ import annotations

import ast
import os
import re
import stat
from pathlib import Path

import pytest

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model_folder import is_model_folder, load_config, write_model_folder

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "transformer_xl"
RUN, MODEL, PREPARED, HF = (
    "run/folder.py",
    "model_folder.py",
    "data/prepared.py",
    "convert/hf_files.py",
)
# a file name (found inside any string) -> the modules that may spell it
FILES = {
    "config.json": {MODEL, RUN, HF},
    "model.safetensors": {MODEL, HF},
    "vocab.json": {MODEL},
    "tokenizer.json": {MODEL},
    "trainer.json": {RUN},
    "MANIFEST.json": {RUN},
    "metrics.jsonl": {RUN},
    "summary.json": {RUN},
    "tf_run.json": {RUN},
    "valid.json": {RUN},
    "optimizer.safetensors": {RUN},
    "state.safetensors": {RUN},
    "meta.json": {PREPARED},
    "step-": {RUN},
    "rank-": {RUN},
}
PATTERNS = {name: re.compile(rf"(?<![\w.]){re.escape(name)}") for name in FILES}
# a run folder's folder joined to a path (``x / "best"``) -> its owners (``model`` and ``data``
# are left out: the authors' TensorFlow release has folders of those names too)
FOLDERS = {"best": {RUN}, "checkpoints": {RUN}, "tensorboard": {RUN}}


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _joined(tree: ast.Module) -> set[int]:
    """The string constants on the right of a ``/`` (a path join)."""
    return {
        id(node.right)
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
    }


def _strays(rel: str, tree: ast.Module) -> list[str]:
    docs, joined, out = _docstrings(tree), _joined(tree), []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if id(node) in docs:
            continue
        text = node.value
        for name, owners in FILES.items():
            if PATTERNS[name].search(text) and rel not in owners:
                out.append(f"{rel}:{node.lineno} {name!r} in {text!r}")
        if id(node) in joined and text in FOLDERS and rel not in FOLDERS[text]:
            out.append(f"{rel}:{node.lineno} / {text!r}")
    return out


def test_folder_file_names_are_spelled_by_their_owners_only():
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        strays += _strays(rel, ast.parse(path.read_text(encoding="utf-8")))
    assert strays == [], "\n".join(strays)


def test_the_check_sees_a_stray_name():
    code = 'x = path / "trainer.json"\ny = f"{p}: no model.safetensors"\nz = d / "best"\n'
    found = _strays("train/loop.py", ast.parse(code))
    assert len(found) == 3, found
    assert _strays(RUN, ast.parse('T = "trainer.json"')) == []
    assert _strays("evaluate.py", ast.parse('"""Reads vocab.json."""')) == []
    assert _strays("convert/api.py", ast.parse('name = "tokenizer_config.json"')) == []


def test_the_one_model_folder_writer_replaces_a_folder_in_one_rename(tmp_path):
    cfg = TransformerXLConfig(vocab_size=11, n_layer=1, n_head=2, d_model=8, d_head=4, d_inner=16)
    out = tmp_path / "m"
    old = os.umask(0o027)
    try:
        write_model_folder(out, cfg, lambda p: p.write_bytes(b"first"), extra=lambda t: None)
    finally:
        os.umask(old)
    assert is_model_folder(out) and load_config(out) == cfg
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # the umask, not mkdtemp's 0700
    (out / "vocab.json").write_text("{}")  # saved there by someone else: kept on a rewrite
    write_model_folder(out, cfg, lambda p: p.write_bytes(b"first"))
    assert (out / "vocab.json").read_text() == "{}"

    def fails(path):
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_model_folder(out, cfg.replace(vocab_size=12), fails)
    assert (out / "model.safetensors").read_bytes() == b"first" and load_config(out) == cfg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # nothing left beside it
