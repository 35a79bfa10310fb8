"""txl export: a model folder for another runtime.

txl export MODEL --format onnx --out DIR [--mem-len M] [--tgt-len T]
    the segment step as DIR/model.onnx (inputs input_ids [B, T], mems [L, B, M, D],
    mem_length [B]; outputs log_probs [B, T, V], new_mems, new_mem_length), DIR/export.json
    (the metadata, also in the model's ONNX properties) and the tokenizer files.
See docs/export.md.
"""

from __future__ import annotations

import argparse

from transformer_xl.commands.common import positive_int
from transformer_xl.export.onnx import export_model_folder
from transformer_xl.model_folder import VOCAB_NAME
from transformer_xl.segment import given_flags


def run(args) -> int:
    meta = export_model_folder(args.model, args.out, changes=given_flags(args))
    print(f"txl export --format onnx: wrote {args.out}")
    print(
        f"  graph: input_ids [B, T], mems [{meta['n_layer']}, B, {meta['mem_len']}, "
        f"{meta['d_model']}], mem_length [B] -> log_probs [B, T, {meta['vocab_size']}], "
        "new_mems, new_mem_length"
    )
    seg = meta["segment"]
    print(
        f"  segment: tgt_len {seg['tgt_len']}, mem_len {seg['mem_len']}, clamp_len "
        f"{seg['clamp_len']}, same_length {seg['same_length']} (keys: {seg['window_keys']})"
    )
    kind, files = meta["tokenizer_kind"], ", ".join(meta["tokenizer_files"])
    print(f"  tokenizer: {f'{kind} ({files})' if kind else f'none (no {VOCAB_NAME} in MODEL)'}")
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "export", help=help, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="model, run or checkpoint folder")
    p.add_argument("--format", choices=["onnx"], required=True, help="what to write")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder (absent or empty)")
    p.add_argument("--mem-len", type=positive_int, metavar="M",
                   help="the memory rows of the graph (default: the model's mem_len)")  # fmt: skip
    p.add_argument("--tgt-len", type=positive_int, metavar="T",
                   help="the segment length the streaming loop uses (default: the model's)")  # fmt: skip
    p.set_defaults(func=run)
