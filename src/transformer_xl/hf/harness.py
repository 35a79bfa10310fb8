"""lm-evaluation-harness 0.4 adapter, registered as model ``transformer-xl``.

    txl lm-eval MODEL --tasks wikitext
    python -m transformer_xl.hf.harness --model transformer-xl --model_args pretrained=MODEL ...

(lm-eval's own ``lm_eval`` command has no plugin hook; ``python -m transformer_xl.hf.harness``
is that command with this adapter registered.) ``MODEL`` is one of our model folders or a Hub
repo id; ``model_args`` may also set ``tgt_len``, ``mem_len``, ``clamp_len``, ``same_length``
and ``revision``.

- ``loglikelihood_rolling`` reads each document once, in segments of ``tgt_len`` with
  recurrence memory (the paper's scoring, :func:`transformer_xl.evaluate.evaluate`), the first
  token predicted from the end-of-sentence token (without one it is not scored);
- ``loglikelihood`` scores a continuation after its context, read the same way;
- ``generate_until`` decodes greedily (or samples, with ``do_sample``) with memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.tasks import TaskManager

from transformer_xl.data.tokenizer import load_tokenizer
from transformer_xl.evaluate import evaluate
from transformer_xl.generate import generate_iter
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.weights import load_pretrained

MODEL_NAME = "transformer-xl"


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ValueError(f"same_length={value!r}: expected true or false")
    return text in ("true", "1")


@register_model(MODEL_NAME)
class TransformerXLHarness(LM):
    def __init__(
        self, pretrained: str, *, revision: str | None = None, tgt_len=None, mem_len=None,
        clamp_len=None, same_length=None, max_gen_toks: int = 256, device: str | None = None,
        **_unused,
    ) -> None:  # fmt: skip
        super().__init__()
        folder = find_model_folder(str(pretrained), revision=revision)
        self.model = load_pretrained(folder).eval()
        self.tokenizer = load_tokenizer(folder)
        # lm-eval's model_args arrive as text: typed here, over the model's settings
        given = dict(tgt_len=tgt_len, mem_len=mem_len, clamp_len=clamp_len)
        changes = {k: int(v) for k, v in given.items() if v is not None}
        if same_length is not None:
            changes["same_length"] = _bool(same_length)
        self.settings = self.model.config.segment.replace(**changes)
        self.tgt_len = self.settings.tgt_len
        self.max_gen_toks = int(max_gen_toks)
        self.start = self.tokenizer.vocab.eos_id  # what the first token is predicted from

    # ------------------------------------------------------------------ scoring
    def _segments(self, ids: list[int]):
        """``(inputs, labels)`` ``[1, <=tgt_len]`` segments of the stream ``ids``."""
        x = torch.tensor(ids[:-1]).view(1, -1)
        y = torch.tensor(ids[1:]).view(1, -1)
        for s in range(0, x.shape[1], self.tgt_len):
            yield x[:, s : s + self.tgt_len], y[:, s : s + self.tgt_len]

    def _stream(self, ids: list[int]) -> list[int]:
        return ([self.start] if self.start is not None else []) + ids

    def rolling_nll(self, text: str) -> tuple[float, int]:
        """Total NLL (nats) and number of scored tokens of one document."""
        ids = self._stream(self.tokenizer.encode(text))
        if len(ids) < 2:
            return 0.0, 0
        res = evaluate(self.model, self._segments(ids), self.settings)
        return res.nll_sum, res.tokens

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        return [-self.rolling_nll(req.args[0])[0] for req in requests]

    @torch.no_grad()
    def _continuation(self, context: str, continuation: str) -> tuple[float, bool]:
        ctx = self._stream(self.tokenizer.encode(context))
        cont = self.tokenizer.encode(continuation)
        if not ctx or not cont:
            raise ValueError(
                "loglikelihood needs a context (this vocabulary has no end-of-sentence token "
                "to start from) and a non-empty continuation"
            )
        ids, mems, log_probs = ctx + cont, None, []
        for x, _ in self._segments(ids):
            out = self.model(x, mems=mems, settings=self.settings, return_log_probs=True)
            mems = out.mems
            log_probs.append(out.log_probs[0])
        lp = torch.cat(log_probs)[len(ctx) - 1 :]  # [len(cont), V]: before each cont token
        target = torch.tensor(cont)
        total = lp.gather(-1, target[:, None]).sum().item()
        return total, bool(torch.equal(lp.argmax(-1), target))

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return [self._continuation(*req.args[:2]) for req in requests]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            context, kwargs = req.args[0], dict(req.args[1] if len(req.args) > 1 else {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            n = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            sample = bool(kwargs.pop("do_sample", False))
            temperature = float(kwargs.pop("temperature", 1.0)) if sample else 0.0
            prompt = self._stream(self.tokenizer.encode(context))
            tokens, text = [], ""
            steps = generate_iter(self.model, [prompt], n, temperature=temperature,
                                  settings=self.settings)  # fmt: skip
            for step in steps:
                tokens.append(int(step[0]))
                text = self.tokenizer.decode(tokens)
                if any(u in text for u in until):
                    break
            for u in until:
                text = text.split(u)[0]
            out.append(text)
        return out


def evaluate_tasks(
    model: str, tasks: list[str], *, include_path: str | None = None, limit: int | None = None,
    revision: str | None = None, changes: Mapping[str, Any] | None = None,
) -> dict:  # fmt: skip
    """lm-eval's results (task -> metrics) for ``tasks`` on ``model``, a model folder or Hub
    repo id. ``changes``: segment settings by name (``tgt_len``, ``mem_len``, ``clamp_len``,
    ``same_length``) over the model's, as lm-eval's ``model_args`` give them."""
    lm = TransformerXLHarness(model, revision=revision, **dict(changes or {}))
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"--tasks: unknown task(s) {unknown} (see --include-path)")
    return simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit)["results"]


def main() -> None:
    """lm-eval's command line with this adapter registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
