"""``txl generate MODEL``: sample text from a saved model, printing tokens as they come.

MODEL is a model folder (``config.json`` + ``model.safetensors``, plus ``vocab.json`` when the
model has a tokenizer). Text prompts (``--prompt``, ``--prompt-file``) need the tokenizer;
``--prompt-ids`` works for any model and prints ids (as does ``--ids``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _read_prompt(args, tokenizer) -> list[int]:
    if args.prompt_ids is not None:
        try:
            ids = [int(t) for t in args.prompt_ids.replace(",", " ").split()]
        except ValueError:
            raise ValueError(
                f"--prompt-ids {args.prompt_ids!r}: expected integers separated by spaces or commas"
            ) from None
    else:
        if tokenizer is None:
            raise ValueError(
                f"{args.model}: the model folder has no vocab.json, so text cannot be encoded; "
                "give token ids with --prompt-ids"
            )
        if args.prompt_file is not None:
            try:
                text = Path(args.prompt_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(
                    f"--prompt-file {args.prompt_file}: cannot read it as UTF-8 text ({e})"
                ) from None
        else:
            text = args.prompt
        ids = tokenizer.encode(text)
    if not ids:
        raise ValueError("the prompt is empty after tokenisation: give at least one token")
    return ids


def _load_tokenizer(model_dir: Path):
    if not (model_dir / "vocab.json").is_file():
        return None
    from transformer_xl.data.tokenizer import load_tokenizer

    return load_tokenizer(model_dir)


def run(args) -> int:
    import torch

    from transformer_xl.generate import (
        Sampler,
        StreamingLM,
        TextStreamer,
        read_prompt,
        sample_tokens,
    )
    from transformer_xl.model import TransformerXLLM

    if args.threads:
        torch.set_num_threads(args.threads)
    sampler = Sampler(args.temperature, args.top_k, args.top_p, args.seed)  # checks the values
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise ValueError(
            f"--max-new-tokens={args.max_new_tokens} must be >= 0 and "
            f"--num-samples={args.num_samples} >= 1"
        )
    model_dir = Path(args.model)
    model = TransformerXLLM.from_pretrained(model_dir, map_location=args.device).eval()
    tokenizer = _load_tokenizer(model_dir)
    prompt = _read_prompt(args, tokenizer)
    show_text = tokenizer is not None and not args.ids
    eos_id = None
    if args.stop_at_eos:
        eos_id = None if tokenizer is None else tokenizer.vocab.eos_id
        if eos_id is None:
            raise ValueError("--stop-at-eos: the model's vocabulary has no end-of-sentence token")

    stream = StreamingLM(
        model, 1, mem_len=args.mem_len, clamp_len=args.clamp_len, same_length=args.same_length
    )
    chunk = model.config.tgt_len if args.tgt_len is None else args.tgt_len
    first = read_prompt(stream, torch.tensor([prompt], device=args.device), chunk)
    out = sys.stdout
    for k in range(args.num_samples):
        if args.num_samples > 1:
            out.write(("\n" if k else "") + f"--- sample {k + 1} ---\n")
        text = TextStreamer(tokenizer.decode, prompt) if show_text else None
        tokens = sample_tokens(stream.clone(), first, args.max_new_tokens, sampler, eos_id=eos_id)
        for n, token in enumerate(tokens):
            t = int(token[0])
            out.write(text.push(t) if text else f"{'' if n == 0 else ' '}{t}")
            out.flush()
        out.write((text.flush() if text else "") + "\n")
        out.flush()
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="sample from a saved model, streaming tokens to stdout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model folder (config.json, model.safetensors[, vocab.json])")
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
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    p.set_defaults(func=run)
