"""txl convert: foreign checkpoints -> a model folder, and a model folder -> HF.

txl convert --from tf SRC OUT        the authors' TensorFlow checkpoints (no TF needed)
txl convert --from original SRC OUT  the authors' PyTorch model.pt or state dict
txl convert --from hf SRC OUT        an HF TransfoXL folder
txl convert --from nvidia SRC OUT    NVIDIA DeepLearningExamples' checkpoint_best.pt /
                                     checkpoint_last.pt (or their training folder)
txl convert --to hf SRC OUT          one of our model folders, for transformers 5 (AutoModel);
                                     --hf-format legacy: HF's TransfoXL of transformers 4.x
txl convert --remap-data --model MODEL DATA OUT
                                     the prepared dataset DATA in MODEL's token ids
See docs/pretrained.md.
"""

from __future__ import annotations

import argparse

from transformer_xl.convert.api import convert_checkpoint, export_hf
from transformer_xl.convert.hf_files import HF_BIN, HF_SAFETENSORS
from transformer_xl.convert.remap import load_target_vocab, remap_prepared
from transformer_xl.model_folder import VOCAB_NAME


def _cutoffs(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--cutoffs {text!r}: expected comma-separated integers, e.g. 20000,40000,200000"
        ) from None
    return values


def remap(args) -> int:
    if not args.model:
        raise ValueError(f"--remap-data needs --model (a converted model folder or a {VOCAB_NAME})")
    result = remap_prepared(args.src, load_target_vocab(args.model), args.out)
    print(
        f"txl convert --remap-data: wrote {args.out} ({result['changed']:,} token ids renumbered, "
        f"{result['unmapped']:,} data tokens not in the model's vocabulary)"
    )
    return 0


def run(args) -> int:
    if args.remap_data:
        return remap(args)
    if args.to:
        result = export_hf(
            args.src, args.out, weights=args.weights, hf_format=args.hf_format,
            dataset=args.dataset,
        )  # fmt: skip
    else:
        result = convert_checkpoint(
            args.source,
            args.src,
            args.out,
            vocab_file=args.vocab_file,
            corpus_info=args.corpus_info,
            dataset=args.dataset,
            cutoffs=args.cutoffs,
            with_vocab=not args.no_vocab,
        )
    cfg, counts = result.config, result.counts
    kind = f"--to {args.to}" if args.to else f"--from {args.source}"
    print(f"txl convert {kind}: wrote {result.out}")
    print(
        f"  tensors: {counts['converted']} written from {counts['source']}"
        + (f" ({counts['skipped']} skipped: optimizer state, tied or shared duplicates, "
           "recomputed buffers)" if counts["skipped"] else "")
    )  # fmt: skip
    print(
        f"  model: {cfg.n_layer} layers, d_model {cfg.d_model}, {cfg.n_head}x{cfg.d_head} heads, "
        f"vocab {cfg.vocab_size}, cutoffs {list(cfg.cutoffs)}, div_val {cfg.div_val}"
    )
    s = cfg.segment
    print(
        f"  run defaults: tgt_len {s.tgt_len}, mem_len {s.mem_len}, clamp_len {s.clamp_len}, "
        f"same_length {s.same_length} (keys: {s.window_keys})"
    )
    if result.vocab is not None:
        print(f"  vocabulary: {len(result.vocab['tokens'])} tokens ({result.vocab['kind']})")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "convert",
        help=help,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--from", dest="source", choices=["tf", "original", "hf", "nvidia"],
                     help="the format of SRC")  # fmt: skip
    way.add_argument("--to", choices=["hf"], help="write our model folder SRC in this format")
    way.add_argument(
        "--remap-data",
        action="store_true",
        help="re-encode the prepared dataset SRC into the ids of --model's vocabulary",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint file, prefix or folder")
    p.add_argument("out", metavar="OUT", help="new folder to write (must not exist or be empty)")
    p.add_argument(
        "--vocab-file",
        metavar="PATH",
        help="vocabulary: TF data/cache.pkl, PyTorch cache.pt or HF vocab.pkl (found "
        "automatically in the released TF layout and in HF folders)",
    )
    p.add_argument(
        "--corpus-info",
        metavar="PATH",
        help="TF corpus-info.json (found automatically in the released layout)",
    )
    p.add_argument(
        "--dataset",
        help="override the dataset the files name (enwik8, text8, wt103, lm1b, ...): "
        "vocabulary kind and evaluation settings",
    )
    p.add_argument(
        "--cutoffs",
        type=_cutoffs,
        metavar="A,B,C",
        help="adaptive-softmax cutoffs, for plain state dicts with div_val 1",
    )
    p.add_argument("--no-vocab", action="store_true", help="convert the weights only")
    p.add_argument("--model", metavar="DIR", help="with --remap-data: the model folder")
    p.add_argument("--weights", choices=["safetensors", "bin"], default="safetensors",
                   help=f"with --to hf: {HF_SAFETENSORS} or {HF_BIN}")  # fmt: skip
    p.add_argument("--hf-format", choices=["transformers5", "legacy"], default="transformers5",
                   help="with --to hf: this package's classes for transformers 5 (default) or "
                   "HF's TransfoXL of transformers 4.x (legacy)")  # fmt: skip
    p.set_defaults(func=run)
