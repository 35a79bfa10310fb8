"""Every file kind and every ``--set`` key, under arbitrary and damaged input (Hypothesis).

The property, the same for each reader: the input is accepted and read correctly, or it is
refused with the one error type, :class:`InputError`, naming the file (never another exception,
never a traceback); and the input file is never changed. Documents are valid ones mutated
(fields dropped, replaced, retyped, added), arbitrary JSON values, and damaged text (duplicate
keys, deep nesting, huge integers, NaN/Infinity, cut short, a BOM, bytes that are not UTF-8,
YAML anchors and aliases, keys that are not text). Profiles: see ``conftest.py``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.data.prepared import PreparedWriter, load_prepared
from transformer_xl.data.vocab import Vocab
from transformer_xl.run.config import (
    MODEL_FIELDS,
    TRAIN_FIELDS,
    RunConfig,
    get_path,
    parse_override,
    read_config_file,
    resolve,
)
from transformer_xl.run.folder import verify, write_manifest
from transformer_xl.run.metrics import read_metrics
from transformer_xl.schema import InputError, read_file
from transformer_xl.schema.files import TFTrainerState, TorchTrainerState, TrainerState
from transformer_xl.schema.tensors import read_header
from transformer_xl.segment import SegmentSettings

# ---------------------------------------------------------------------------- strategies
# an explicit alphabet (letters, digits, JSON/YAML syntax, controls, non-ASCII, a BOM, astral):
# Hypothesis's default one costs seconds of setup per process
ALPHABET = "abnxyz_-. 019+eE[]{}\":,'&*!#\\/\n\t\x00\x7f\u00e9\u2603\ufeff\U0001d11e"
TEXT = st.text(ALPHABET, max_size=12)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), TEXT,
)  # fmt: skip
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(ALPHABET, max_size=8), inner, max_size=4),
    ),
    max_leaves=10,
)
TRICKY = [True, False, None, 0, -1, 1.5, math.nan, math.inf, -math.inf, 2**64, 10**30, 1e308,
          "", "x", "1", [], {}, [1, "a"], [True], {"a": 1}]  # fmt: skip


def _slots(doc) -> list[tuple[object, object]]:
    """Every (container, key) of ``doc``: where a mutation can land."""
    out, stack = [], [doc]
    while stack:
        c = stack.pop()
        keys = list(c) if isinstance(c, dict) else range(len(c)) if isinstance(c, list) else ()
        for k in keys:
            out.append((c, k))
            stack.append(c[k])
    return out


@st.composite
def mutated(draw, valid: dict) -> dict:
    """``valid`` with one to three fields dropped, replaced, retyped or added."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc)
        op = draw(st.sampled_from(["drop", "replace", "retype", "add"]))
        if not slots or op == "add":
            dicts = [doc] + [c[k] for c, k in slots if isinstance(c[k], dict)]
            target = draw(st.sampled_from(dicts))
            target[draw(st.text(ALPHABET, max_size=10))] = copy.deepcopy(draw(JSON_VALUES))
            continue
        container, key = draw(st.sampled_from(slots))
        if op == "drop":
            del container[key]
        else:
            value = draw(st.sampled_from(TRICKY) if op == "retype" else JSON_VALUES)
            container[key] = copy.deepcopy(value)  # TRICKY's lists are shared: never mutated
    return doc


NUMBER = re.compile(r"(?<=: )-?\d+(\.\d+)?(e-?\d+)?")


@st.composite
def damaged_text(draw, text: str) -> bytes:
    """JSON ``text`` damaged at the level of its characters."""
    brace = text.index("{") + 1
    key = re.search(r'"([^"]+)":', text)
    kind = draw(st.sampled_from(["dup", "deep", "digits", "constant", "cut", "bom", "bytes"]))
    if kind == "dup" and key:
        text = f'{text[:brace]}"{key[1]}": 0, {text[brace:]}'
    elif kind == "deep":
        n = draw(st.sampled_from([31, 33, 200, 5000]))
        text = f'{text[:brace]}"deep": {"[" * n}{"]" * n}, {text[brace:]}'
    elif kind in ("digits", "constant") and NUMBER.search(text):
        new = draw(st.sampled_from(["9" * 19, "9" * 20, "-" + "9" * 300, "9" * 5000] if kind ==
                                   "digits" else ["NaN", "Infinity", "-Infinity", "1e999"]))  # fmt: skip
        text = NUMBER.sub(new, text, count=1)
    elif kind == "cut":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif kind == "bom":
        text = "\ufeff" + text
    data = text.encode("utf-8")
    if kind == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff\xfe\x80" + data[at:]
    return data


def dumps(doc) -> str:
    return json.dumps(doc, indent=1)  # NaN and Infinity written as such: readers must refuse


# ---------------------------------------------------------------------------- the property
def _digest(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def read_or_refused(read, named: str, inputs):
    """``read()``'s value, or None when it raised :class:`InputError` naming ``named``; any
    other exception fails the test; ``inputs`` are unchanged either way."""
    before = _digest(inputs)
    try:
        value = read()
    except InputError as e:
        assert named in str(e) and "\n" not in str(e), str(e)
        value = None
    assert _digest(inputs) == before, "an input file was changed"
    return value


def same(a, b) -> bool:
    """Equal as JSON values *and* of the same JSON type (``True`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def agrees(held, given) -> bool:
    """Every value ``given`` (nested mappings: key by key; names the reader renamed, such as
    an earlier version's, left out) is the value ``held``."""
    if isinstance(given, dict) and isinstance(held, dict):
        return all(agrees(held[k], v) for k, v in given.items() if k in held)
    return same(held, given)


def write(path: Path, doc_or_bytes) -> Path:
    data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else dumps(doc_or_bytes).encode()
    path.write_bytes(data)
    return path


@pytest.fixture()
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("prop")


# ---------------------------------------------------------------------------- model config
MODEL = TransformerXLConfig(
    vocab_size=50, n_layer=1, n_head=2, d_model=8, d_head=4, d_inner=16, cutoffs=(10, 20),
    div_val=2, tie_projs=(False, True, True), dropout=0.1,
    segment=SegmentSettings(same_length=True),
).to_dict()  # fmt: skip


def _check_model_doc(scratch, doc) -> None:
    path = write(scratch / "config.json", doc)
    cfg = read_or_refused(lambda: TransformerXLConfig.load(path), str(path), [path])
    if cfg is not None:  # accepted: every field given is the value read
        got = cfg.to_dict()
        given = {k: v for k, v in doc.items() if k != "format_version"}
        assert agrees(got, given), (doc, got)


@given(doc=mutated(MODEL))
def test_model_config_mutations(scratch, doc):
    _check_model_doc(scratch, doc)


@given(doc=JSON_VALUES)
def test_model_config_arbitrary_json(scratch, doc):
    path = write(scratch / "config.json", doc)
    read_or_refused(lambda: TransformerXLConfig.load(path), str(path), [path])


@given(data=damaged_text(dumps(MODEL)))
def test_model_config_damaged_text(scratch, data):
    path = write(scratch / "config.json", data)
    read_or_refused(lambda: TransformerXLConfig.load(path), str(path), [path])


# ---------------------------------------------------------------------------- run config
RUN = resolve("tiny").to_dict()


@given(doc=st.one_of(mutated(RUN), JSON_VALUES))
def test_run_config(scratch, doc):
    path = write(scratch / "config.json", doc)
    run = read_or_refused(lambda: RunConfig.load(path), str(path), [path])
    if run is not None:
        assert same(run.train.to_dict(), doc["train"] | run.train.to_dict())


# ---------------------------------------------------------------------------- vocabulary
VOCAB = Vocab(["<eos>", "<unk>", "a", "b"], "word", eos_token="<eos>", unk_token="<unk>",
              special_tokens=["<eos>", "<unk>"], options={"lower_case": True}).to_dict()  # fmt: skip


@given(doc=st.one_of(mutated(VOCAB), JSON_VALUES, damaged_text(dumps(VOCAB))))
def test_vocab(scratch, doc):
    path = write(scratch / "vocab.json", doc)
    vocab = read_or_refused(lambda: Vocab.load(path), str(path), [path])
    if vocab is not None:
        assert list(vocab.tokens) == doc["tokens"] and vocab.kind == doc["kind"]


# ---------------------------------------------------------------------------- prepared data
@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A sentence corpus: ``<S> a b <S> b <S>``, offsets, two shards."""
    out = tmp_path_factory.mktemp("data") / "ds"
    vocab = Vocab(["<S>", "a", "b"], "word", eos_token="<S>", special_tokens=["<S>"])
    with PreparedWriter(out) as w:
        splits = {}
        for name in ("train", "valid"):
            sw = w.split(name, "uint8")
            sw.write(np.array([0, 1, 2, 0, 2, 0]))
            info = sw.close()
            info["sentences"] = w.write_array(f"{name}.sentences.bin", np.array([0, 3, 5]))
            info["shards"] = [
                {"name": "f1", "sentences": [0, 1]},
                {"name": "f2", "sentences": [1, 2]},
            ]
            splits[name] = info
        w.commit({"dataset": "tiny", "unit": "word", "dtype": "uint8", "splits": splits}, vocab)
    return out


def _open_all(folder: Path):
    ds = load_prepared(folder, verify=True)
    for name in ds.splits:
        ds.split(name), ds.sentence_offsets(name)
    return ds


@given(data=st.data())
def test_prepared_meta(prepared, scratch, data):
    folder = scratch / "ds"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(prepared, folder)
    meta = json.loads((prepared / "meta.json").read_text())
    doc = data.draw(st.one_of(mutated(meta), JSON_VALUES, damaged_text(dumps(meta))))
    write(folder / "meta.json", doc)
    files = sorted(p for p in folder.iterdir())
    read_or_refused(lambda: _open_all(folder), str(folder), files)


@given(data=st.binary(min_size=0, max_size=40), which=st.sampled_from(["train.sentences.bin",
       "train.bin", "vocab.json"]))  # fmt: skip
def test_prepared_files_damaged(prepared, scratch, data, which):
    """Data files replaced by arbitrary bytes: refused by name (never garbage, never a hang)."""
    folder = scratch / "ds"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(prepared, folder)
    (folder / which).write_bytes(data)
    files = sorted(folder.iterdir())
    ds = read_or_refused(lambda: _open_all(folder), str(folder), files)
    if ds is not None:  # only the very same bytes can pass the checksums
        assert data == (prepared / which).read_bytes()


# ---------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    ckpt = tmp_path_factory.mktemp("ckpt") / "step-00000002"
    (ckpt / "model").mkdir(parents=True)
    (ckpt / "trainer.json").write_text(json.dumps(TORCH_TRAINER))
    (ckpt / "model" / "config.json").write_text(dumps(MODEL))
    write_manifest(ckpt)
    assert verify(ckpt) is None
    return ckpt


@given(data=st.data(), keep=st.booleans())
def test_manifest(checkpoint, scratch, data, keep):
    """A damaged manifest never raises: it makes the checkpoint unusable (and --resume falls
    back to an older one, see test_schema.py); a valid one still vouches for it."""
    folder = scratch / checkpoint.name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(checkpoint, folder)
    manifest = json.loads((checkpoint / "MANIFEST.json").read_text())
    if not keep:
        doc = data.draw(st.one_of(mutated(manifest), JSON_VALUES, damaged_text(dumps(manifest))))
        write(folder / "MANIFEST.json", doc)
    before = _digest(p for p in folder.rglob("*") if p.is_file())
    reason = verify(folder)
    assert reason is None if keep else isinstance(reason, str | None)
    assert _digest(p for p in folder.rglob("*") if p.is_file()) == before


TORCH_TRAINER = {
    "format_version": 1, "world_size": 1, "scaler": None, "run": RUN,
    "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
    "progress": {"step": 2, "tokens": 32, "best_valid": 3.5, "dev_perf": {"best": 1.0}},
}  # fmt: skip
TRAINER = {"format_version": 2, "backend": "torch", "world_size": 1, "run": RUN,
           "progress": {"step": 2, "best_valid": 3.5}, "state": {"scaler": None}}  # fmt: skip
TF_TRAINER = {"step": 2, "tokens": 32, "segment": 2, "best_valid": 3.5, "best_step": 2,
              "dev_scale": 1.0, "dev_best": 3.5, "dev_bad": 0}  # fmt: skip


@pytest.mark.parametrize("schema, valid", [(TrainerState, TRAINER), (TorchTrainerState,
                         TORCH_TRAINER), (TFTrainerState, TF_TRAINER)])  # fmt: skip
@given(data=st.data())
def test_trainer_state(scratch, schema, valid, data):
    doc = data.draw(st.one_of(mutated(valid), JSON_VALUES, damaged_text(dumps(valid))))
    path = write(scratch / "trainer.json", doc)
    state = read_or_refused(lambda: read_file(path, schema), str(path), [path])
    if state is not None:
        assert same(state.model_dump(exclude_unset=True), doc)


# ---------------------------------------------------------------------------- metrics
RECORDS = [{"split": "train", "step": 1, "loss": 2.0, "ppl": 7.4, "lr": 0.001, "tok_s": 10.0},
           {"split": "valid", "step": 1, "loss": 2.5, "bpc": 3.6, "final": True}]  # fmt: skip


@given(lines=st.lists(st.one_of(mutated(RECORDS[0]), mutated(RECORDS[1]), JSON_VALUES),
                      min_size=1, max_size=4), last=st.binary(max_size=20))  # fmt: skip
def test_metrics_lines(scratch, lines, last):
    path = scratch / "metrics.jsonl"
    path.write_bytes(b"".join(dumps(r).replace("\n", "").encode() + b"\n" for r in lines) + last)
    records = read_or_refused(lambda: read_metrics(path), str(path), [path])
    if records is not None:
        assert all(same(r, d) for r, d in zip(records, lines, strict=False))


# ---------------------------------------------------------------------------- config files
CONFIG = {"preset": "tiny", "model": {"n_layer": 2, "dropout": 0.2, "cutoffs": []},
          "train": {"lr": 0.001, "max_steps": 5, "optimizer": "adam", "same_length": True}}  # fmt: skip


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps("null" if v is None else v)


def toml_dumps(doc) -> str:
    if not isinstance(doc, dict):
        return f"value = {toml_value(doc)}\n"
    lines = [
        f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)
    ]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


YAML_DAMAGE = [
    "train:\n  lr: &a 0.1\n  clip: *a\n",
    "a: &a [1, 1, 1, 1]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
    "train:\n  1: 2\n", "model:\n  [1, 2]: 3\n", "train:\n  lr: 1\n  lr: 2\n",
    "train: 0\n", "train: [1]\n", "preset: [tiny]\n", "model:\n  layer_norm_eps: .inf\n",
    "train:\n  lr: .nan\n", "train:\n  data: 2024-01-01\n", "model: {" * 60 + "}" * 60 + "\n",
    "train:\n  max_steps: " + "9" * 5000 + "\n", "train:\n  lr: !!binary aGVsbG8=\n",
    "train: !!set {a, b}\n", "? [a]\n: 1\n", "train:\n\tlr: 1\n",
]  # fmt: skip


@st.composite
def config_files(draw) -> tuple[str, bytes]:
    doc = draw(st.one_of(mutated(CONFIG), JSON_VALUES))
    suffix = draw(st.sampled_from([".yaml", ".toml", ".json"]))
    if suffix == ".yaml":
        text = draw(st.sampled_from([yaml.safe_dump(doc), *YAML_DAMAGE]))
        return suffix, text.encode()
    if suffix == ".toml":
        return suffix, toml_dumps(doc).encode()
    return suffix, draw(st.one_of(st.just(dumps(doc).encode()), damaged_text(dumps(CONFIG))))


@given(case=config_files())
def test_config_files(scratch, case):
    suffix, data = case
    path = scratch / f"c{suffix}"
    path.write_bytes(data)
    read_or_refused(lambda: resolve(None, path), str(path), [path])
    read_or_refused(lambda: read_config_file(path), str(path), [path])


# ---------------------------------------------------------------------------- --set
KEYS = sorted(TRAIN_FIELDS) + sorted(f"model.{k}" for k in MODEL_FIELDS)
RAW = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 30, "9" * 5000, "true",
                     "false", "null", "[1, true]", "[" * 40 + "]" * 40, "{}", '"x"', "",
                     "0", "-1", "1.5", "[]", "[10, 20]", "[false, true, true]", "adam",
                     "ADAM", "cpu", "mem_len"]),
    JSON_VALUES.map(lambda v: json.dumps(v)),
    st.text(ALPHABET, max_size=15),
)  # fmt: skip
DERIVED = {"model.segment.tgt_len", "model.segment.mem_len", "model.segment.ext_len"}  # from train


@given(key=st.sampled_from(KEYS), raw=RAW)
def test_set_any_key_any_value(key, raw):
    item = f"{key}={raw}"
    run = read_or_refused(lambda: resolve("tiny", None, [item]), "--set", [])
    if run is not None and key not in DERIVED:
        section, name, value = parse_override(item)
        held = get_path(run.train if section == "train" else run.model, name)
        assert same(held, value), (item, held, value)
        if isinstance(held, float):
            assert math.isfinite(held)


def test_headers_of_safetensors_files(tmp_path):
    """See also test_schema.py; here: arbitrary header documents never escape as another
    exception (a small deterministic sweep of mutations)."""
    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.int64)}, str(path))
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header, body = json.loads(raw[8 : 8 + n]), raw[8 + n :]

    @given(doc=st.one_of(mutated(header), JSON_VALUES))
    def check(doc):
        text = json.dumps(doc).encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text + body)
        read_or_refused(lambda: read_header(path), str(path), [path])

    check()
