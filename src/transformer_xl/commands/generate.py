"""txl generate MODEL: sample text from a saved model, printing tokens as they come.

MODEL is a model folder (config.json + model.safetensors, plus vocab.json when the model has a
tokenizer), a run folder (its best model) or a checkpoint folder. Text prompts (--prompt,
--prompt-file) need the tokenizer; --prompt-ids works for any model and prints ids (as does --ids).
"""

from __future__ import annotations

import argparse
import sys

import torch

from transformer_xl.commands.common import add_device, add_precision, add_threads
from transformer_xl.continuation import open_model, read_into
from transformer_xl.devices import cast_for_inference, resolve_device
from transformer_xl.model.generate import Sampler
from transformer_xl.prompt import encode_prompt, parse_ids, read_prompt_file
from transformer_xl.segment import given_flags, with_flags


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    sampler = Sampler(args.temperature, args.top_k, args.top_p, args.seed)  # checks the values
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise ValueError(
            f"--max-new-tokens={args.max_new_tokens} must be >= 0 and "
            f"--num-samples={args.num_samples} >= 1"
        )
    device = resolve_device(args.device)
    ids = None if args.prompt_ids is None else parse_ids(args.prompt_ids)
    text = read_prompt_file(args.prompt_file) if args.prompt_file is not None else args.prompt
    opened = open_model(args.model, device=device)
    cast_for_inference(opened.model, args.precision)  # weights cast once (no autocast)
    prompt = encode_prompt(
        opened.model.config.vocab_size, opened.tokenizer, text=text, ids=ids,
        model=opened.location.model_dir,
    )  # fmt: skip
    if prompt.unknown:
        print(
            f"txl generate: note: {prompt.unknown} prompt token(s) are not in the vocabulary "
            f"and became {opened.tokenizer.vocab.unk_token}",
            file=sys.stderr,
        )
    settings = with_flags(opened.model.config.segment, given_flags(args))
    prompted = read_into(
        opened, prompt, settings, as_text=not args.ids, stop_at_eos=args.stop_at_eos
    )
    out = sys.stdout
    for k in range(args.num_samples):
        if args.num_samples > 1:
            out.write(("\n" if k else "") + f"--- sample {k + 1} ---\n")
        for piece in prompted.sample(args.max_new_tokens, sampler):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "generate",
        help=help,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a model folder, a run folder (its best model) or a checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", help="read the prompt text from this UTF-8 file")
    src.add_argument("--prompt-ids", help="prompt token ids, e.g. '12 7 99'")
    p.add_argument("--max-new-tokens", type=int, default=100)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: unseeded)")
    p.add_argument("--num-samples", type=int, default=1, help="continuations of the same prompt")
    p.add_argument("--mem-len", type=int, default=None, help="memory length (default: config)")
    p.add_argument(
        "--tgt-len", type=int, default=None, help="prompt segment length (default: config)"
    )
    p.add_argument(
        "--clamp-len", type=int, default=None, help="max relative distance (default: config)"
    )
    p.add_argument(
        "--same-length", action=argparse.BooleanOptionalAction, default=None,
        help="every token attends to the same number of keys (default: config)",
    )  # fmt: skip
    p.add_argument("--stop-at-eos", action="store_true", help="stop at the end-of-sentence token")
    p.add_argument("--ids", action="store_true", help="print token ids instead of text")
    add_device(p)
    add_precision(p, how="weights cast once")
    add_threads(p)
    p.set_defaults(func=run)
