"""Our vocabularies as HF ``tokenizers`` files that ``AutoTokenizer`` loads (every kind).

:func:`hf_tokenizer` builds a ``tokenizers.Tokenizer`` whose ``encode(text)`` gives the ids of
:func:`transformer_xl.data.tokenizer.make_tokenizer` for the same vocabulary (the rules are in
that module's docstring); :func:`write_hf_tokenizer` saves it as ``tokenizer.json`` with a
``tokenizer_config.json`` naming ``PreTrainedTokenizerFast`` (transformers 4 and 5 load it).

- ``byte``: the byte-level alphabet (byte ``b`` is one printable character, as GPT-2's
  tokenizers spell bytes), one token per byte; the byte-level decoder turns ids back into text.
- ``char``: one token per character; with an end-of-sentence token, that token is spelled
  ``"\\n"`` in the HF vocabulary (our ``<eos>`` stands for a newline in char text), and it
  is not declared as the tokenizer's ``eos_token`` (see :func:`special_tokens`).
- ``word``: split at whitespace, a newline becomes the end-of-sentence token, ``eos_at_start``
  is a template that puts it first.
- ``bpe``: the model's own ``tokenizer.json``, splitting the text into lines first (as we encode
  line by line).

What HF cannot express is refused by name: a char vocabulary that holds both an
end-of-sentence token and a newline character (both would be spelled ``"\\n"``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from transformer_xl.data.tokenizer import HF_TOKENIZER_NAME, load_hf_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.fileio import atomic_write_text

HF_TOKENIZER = HF_TOKENIZER_NAME
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
_WHITESPACE_BYTES = (9, 10, 11, 12, 13, 32)  # bytes.isspace()
# str.splitlines() breaks after these (after "\r" too, which newline normalisation removes)
_LINE_BREAKS = "\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ANY_CHAR = r"[\s\S]"  # any character, newlines included


def byte_alphabet() -> list[str]:
    """The printable character that stands for byte ``b``, for ``b`` in 0..255: the printable
    Latin-1 bytes stand for themselves, the others for code points from 256 on in byte order
    (the byte-level scheme of GPT-2's tokenizers, which their ``ByteLevel`` decoder undoes)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def _unicode_whitespace() -> list[str]:
    return [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def _char_class(chars) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def _newline_rules(normalizers) -> list:
    return [normalizers.Replace("\r\n", "\n"), normalizers.Replace("\r", "\n")]


def _drop_rule(normalizers, missing: list[str]) -> list:
    """Whitespace that is absent from a vocabulary without an unknown token is dropped."""
    from tokenizers import Regex

    return [normalizers.Replace(Regex(_char_class(missing)), "")] if missing else []


def _word_level(vocab: Vocab, table: dict[str, int]):
    from tokenizers import Tokenizer, models

    # without an unknown token, a word missing from the table fails to encode (as ours does)
    unk = vocab.unk_token if vocab.unk_token is not None else "\x00<no unknown token>"
    return Tokenizer(models.WordLevel(table, unk_token=unk))


def _byte_tokenizer(vocab: Vocab):
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    alphabet, specials = byte_alphabet(), set(vocab.special_tokens)
    table = {t if t in specials else alphabet[int(t)]: i for i, t in enumerate(vocab.tokens)}
    tok = _word_level(vocab, table)
    present = {int(t) for t in vocab.tokens if t not in specials}
    missing = [] if vocab.unk_id is not None else [
        chr(b) for b in _WHITESPACE_BYTES if b not in present
    ]  # fmt: skip
    rules = _drop_rule(normalizers, missing)
    if rules:
        tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        pre_tokenizers.Split(Regex(_ANY_CHAR), "isolated"),
    ])  # fmt: skip
    tok.decoder = decoders.ByteLevel()
    return tok


def _char_tokenizer(vocab: Vocab):
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    eos = vocab.eos_token
    if eos is not None and "\n" in vocab.tokens:
        raise ValueError(
            "char vocabulary: it holds both an end-of-sentence token and a newline character, "
            "which an HF tokenizer cannot tell apart (both stand for a newline)"
        )
    table = {("\n" if t == eos else t): i for i, t in enumerate(vocab.tokens)}
    tok = _word_level(vocab, table)
    rules = _newline_rules(normalizers)
    if vocab.unk_id is None:  # our lookup lower-cases first; whitespace stays as it is
        rules += _drop_rule(normalizers, [c for c in _unicode_whitespace() if c not in table])
    if vocab.options["lower_case"]:
        rules.append(normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_ANY_CHAR), "isolated")
    tok.decoder = decoders.Fuse()
    return tok


def _word_tokenizer(vocab: Vocab):
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors

    tok = _word_level(vocab, {t: i for i, t in enumerate(vocab.tokens)})
    # str.split() also splits at these four, which Rust's whitespace test does not
    rules = [*_newline_rules(normalizers), normalizers.Replace(Regex("[\x1c-\x1f]"), " ")]
    if vocab.options["lower_case"]:
        rules.append(normalizers.Lowercase())
    if vocab.eos_token is not None:
        rules.append(normalizers.Replace("\n", f" {vocab.eos_token} "))
    tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # a space before every word: text decoded piece by piece (pipelines) keeps its separators
    tok.decoder = decoders.Sequence([decoders.Replace(Regex("^"), " "), decoders.Fuse()])
    if vocab.options["eos_at_start"]:
        eos = vocab.eos_token
        tok.post_processor = processors.TemplateProcessing(
            single=f"{eos} $A", pair=f"{eos} $A $B", special_tokens=[(eos, vocab.eos_id)]
        )
    return tok


def _bpe_tokenizer(vocab: Vocab, directory: Path):
    from tokenizers import Regex, normalizers, pre_tokenizers

    tok = load_hf_tokenizer(directory / HF_TOKENIZER_NAME)
    rules = _newline_rules(normalizers)
    tok.normalizer = normalizers.Sequence(rules + ([tok.normalizer] if tok.normalizer else []))
    lines = pre_tokenizers.Split(Regex(_char_class(_LINE_BREAKS)), "merged_with_previous")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [lines] + ([tok.pre_tokenizer] if tok.pre_tokenizer else [])
    )
    return tok


def hf_tokenizer(vocab: Vocab, directory: str | os.PathLike | None = None):
    """The ``tokenizers.Tokenizer`` for ``vocab`` (bpe reads ``directory/tokenizer.json``)."""
    try:
        import tokenizers  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(
            "writing an HF tokenizer needs the 'tokenizers' package: "
            "pip install 'transformer-xl[bpe]'"
        ) from e
    if vocab.kind == "bpe":
        if directory is None:
            raise ValueError(f"a bpe vocabulary needs the folder holding its {HF_TOKENIZER}")
        return _bpe_tokenizer(vocab, Path(directory))
    build = {"byte": _byte_tokenizer, "char": _char_tokenizer, "word": _word_tokenizer}
    return build[vocab.kind](vocab)


def special_tokens(vocab: Vocab) -> dict[str, Any]:
    """The special tokens the HF tokenizer declares. Declared tokens are matched in the raw
    text before anything else, as our word tokenizer does with its specials, so only word and
    bpe vocabularies declare them: a byte or char model reads ``"<unk>"`` in a text as five
    characters (the model config still names the end-of-sentence id for ``generate``)."""
    if vocab.kind in ("byte", "char"):
        return {}
    found = {"eos_token": vocab.eos_token, "unk_token": vocab.unk_token}
    return {k: v for k, v in found.items() if v is not None}


def write_hf_tokenizer(
    vocab: Vocab, out: str | os.PathLike, source: str | os.PathLike | None = None
) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` for ``vocab`` into ``out``."""
    out = Path(out)
    tok = hf_tokenizer(vocab, source)
    atomic_write_text(out / HF_TOKENIZER, tok.to_str())
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1_000_000_000,  # recurrence memory: no fixed context length
        "clean_up_tokenization_spaces": False,
        **special_tokens(vocab),
        "txl_vocabulary_kind": vocab.kind,
    }
    atomic_write_text(out / HF_TOKENIZER_CONFIG, json.dumps(config, indent=2) + "\n")
