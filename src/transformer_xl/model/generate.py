"""Sampling and streaming generation with recurrence memory.

The model reads the prompt in segments of ``prompt_chunk_len`` tokens (default: the config's
``tgt_len``), so prompts of any length work, then one token per step, each step attending to at
most ``mem_len + 1`` keys through :class:`~transformer_xl.model.incremental.StreamingLM` (cached
keys and values; nothing is recomputed). Memory stays at most ``mem_len`` positions.

    from transformer_xl.generate import generate
    ids = generate(model, [5, 17, 3], max_new_tokens=50, temperature=0.8, top_p=0.9, seed=0)

``generate_iter`` yields the tokens ``[B]`` step by step; ``StreamingLM`` is the stateful object
for incremental scoring and serving (feed tokens, get next-token log-probabilities, reset rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from transformer_xl.model.incremental import StreamingLM
from transformer_xl.segment import SegmentSettings, settings_or

__all__ = [
    "Sampler",
    "StreamingLM",
    "TextStreamer",
    "filter_top_k",
    "filter_top_p",
    "generate",
    "generate_iter",
    "read_prompt",
    "sample_tokens",
    "start_streams",
]


# ---------------------------------------------------------------------- sampling
def filter_top_k(logits: Tensor, k: int) -> Tensor:
    """``[B, V]`` -> the same with all but the ``k`` largest of each row at ``-inf``
    (``k <= 0`` or ``k >= V``: unchanged). Ties at the k-th value are all kept."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # [B, 1]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep, per row of ``[B, V]``, the fewest most likely tokens whose
    probabilities sum to at least ``p`` (always the most likely one); the rest go to ``-inf``."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
    drop_sorted = before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


class Sampler:
    """Picks next tokens from log-probabilities ``[B, V]``: temperature, then top-k, then top-p.

    ``temperature=0`` is greedy decoding. ``seed`` makes the draws reproducible (a private
    generator; the global RNG is untouched).
    """

    def __init__(
        self, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None
    ) -> None:
        if not temperature >= 0:
            raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k={top_k!r} must be an integer >= 0 (0 = off)")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must be in (0, 1] (1 = off)")
        self.temperature, self.top_k, self.top_p, self.seed = temperature, top_k, top_p, seed
        self._generator: torch.Generator | None = None

    def _rng(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def __call__(self, log_probs: Tensor) -> Tensor:
        if self.temperature == 0:
            return log_probs.argmax(dim=-1)
        logits = log_probs.float() / self.temperature
        logits = filter_top_p(filter_top_k(logits, self.top_k), self.top_p)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=self._rng(probs.device)).squeeze(-1)


# ---------------------------------------------------------------------- generation
def read_prompt(stream: StreamingLM, prompt: Tensor, chunk_len: int) -> Tensor:
    """Feed ``prompt`` ``[B, T]`` in chunks of ``chunk_len``; return the log-probabilities of the
    token after it ``[B, V]``."""
    if chunk_len < 1:
        raise ValueError(f"prompt_chunk_len={chunk_len} must be a positive integer")
    for s in range(0, prompt.shape[1], chunk_len):
        log_probs = stream.feed(prompt[:, s : s + chunk_len])
    return log_probs


def sample_tokens(
    stream: StreamingLM,
    log_probs: Tensor,
    max_new_tokens: int,
    sampler: Sampler,
    *,
    eos_id: int | None = None,
) -> Iterator[Tensor]:
    """Yield ``max_new_tokens`` tokens ``[B]``, each drawn from ``log_probs`` ``[B, V]`` and fed
    back. With ``eos_id``, a row that drew it keeps yielding it, and generation stops once every
    row has."""
    done = None
    for n in range(max_new_tokens):
        token = sampler(log_probs)  # [B]
        if eos_id is not None:
            done = token == eos_id if done is None else done | (token == eos_id)
            token = token.masked_fill(done, eos_id)
        yield token
        if n + 1 == max_new_tokens or (done is not None and bool(done.all())):
            return
        log_probs = stream.feed(token[:, None])


def _prompt_rows(prompt, device: torch.device) -> list[Tensor]:
    """Prompts as a list of ``[1, T_b]`` rows (a list of id lists may be ragged)."""
    try:
        ids = torch.as_tensor(prompt, dtype=torch.long, device=device)
    except (ValueError, TypeError):  # ragged: one tensor per prompt
        rows = [torch.as_tensor(p, dtype=torch.long, device=device).reshape(1, -1) for p in prompt]
    else:
        if ids.dim() not in (1, 2):
            raise ValueError(
                f"prompt must be [T] or [B, T] token ids, got shape {tuple(ids.shape)}"
            )
        rows = list((ids[None] if ids.dim() == 1 else ids).split(1))
    if not rows or any(r.shape[1] < 1 for r in rows):
        raise ValueError("every prompt must hold at least one token")
    return rows


def start_streams(
    model, prompt, chunk_len: int, settings: SegmentSettings | None = None
) -> tuple[StreamingLM, Tensor]:
    """Read the prompts (``[T]``, ``[B, T]`` or a list of id lists of any lengths); return the
    stream and the next-token log-probabilities ``[B, V]``. Prompts of equal length are read
    as one batch, others one by one and then joined."""
    rows = _prompt_rows(prompt, next(model.parameters()).device)
    if len({r.shape[1] for r in rows}) == 1:
        stream = StreamingLM(model, len(rows), settings)
        return stream, read_prompt(stream, torch.cat(rows), chunk_len)
    streams, log_probs = [], []
    for r in rows:
        streams.append(StreamingLM(model, 1, settings))
        log_probs.append(read_prompt(streams[-1], r, chunk_len))
    return StreamingLM.concat(streams), torch.cat(log_probs)


def generate_iter(
    model,
    prompt: Sequence[int] | Tensor,
    max_new_tokens: int = 100,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    num_samples: int = 1,
    eos_id: int | None = None,
    settings: SegmentSettings | None = None,
    prompt_chunk_len: int | None = None,
) -> Iterator[Tensor]:
    """Yield generated tokens step by step, each ``[B]`` with ``B = prompts * num_samples``
    (rows ``p * num_samples .. (p+1) * num_samples - 1`` continue prompt ``p``).

    prompt: token ids, ``[T]``, ``[B, T]`` or a list of id lists (lengths may differ). Each
    prompt is read once, in chunks of ``prompt_chunk_len``, then shared by its samples.
    ``settings`` (a :class:`~transformer_xl.segment.SegmentSettings`, default
    ``config.segment``) gives the memory, clamp and same-length window; ``prompt_chunk_len``
    defaults to its ``tgt_len``.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 0")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r} must be a positive integer")
    sampler = Sampler(temperature, top_k, top_p, seed)  # validate before any work
    settings = settings_or(model.config.segment, settings)
    chunk = settings.tgt_len if prompt_chunk_len is None else prompt_chunk_len
    stream, log_probs = start_streams(model, prompt, chunk, settings)
    if num_samples > 1:
        rows = torch.arange(stream.batch_size, device=log_probs.device)
        rows = rows.repeat_interleave(num_samples)
        stream.reorder(rows)
        log_probs = log_probs.index_select(0, rows)
    yield from sample_tokens(stream, log_probs, max_new_tokens, sampler, eos_id=eos_id)


def generate(model, prompt: Sequence[int] | Tensor, max_new_tokens: int = 100, **kwargs) -> Tensor:
    """Generated tokens ``[B, N]`` (``N <= max_new_tokens``; fewer when every row reached
    ``eos_id``). Same arguments as :func:`generate_iter`."""
    steps = list(generate_iter(model, prompt, max_new_tokens, **kwargs))
    if not steps:
        rows = len(_prompt_rows(prompt, torch.device("cpu"))) * kwargs.get("num_samples", 1)
        return torch.zeros(rows, 0, dtype=torch.long)
    return torch.stack(steps, dim=1)


# ---------------------------------------------------------------------- text output
class TextStreamer:
    """Turns generated ids into printable text piece by piece.

    Each :meth:`push` decodes ``context + generated`` (``context``: the last prompt ids, so that
    word separators come out right) and returns the text not returned before. Text ending in an
    incomplete UTF-8 character (U+FFFD) is held back until the character completes or
    :meth:`flush`.
    """

    def __init__(self, decode: Callable[[list[int]], str], context: Sequence[int] = ()) -> None:
        self.decode = decode
        self.context = [int(t) for t in context][-8:]
        self.base = decode(self.context) if self.context else ""
        self.ids: list[int] = []
        self.emitted = ""

    def _text(self) -> str:
        full = self.decode(self.context + self.ids)
        return full[len(self.base) :] if full.startswith(self.base) else self.decode(self.ids)

    def _emit(self, text: str) -> str:
        # decoding is prefix-stable for every tokenizer here once incomplete characters are held
        # back, so the new text is what lies beyond the text already returned
        if len(text) <= len(self.emitted):
            return ""
        new, self.emitted = text[len(self.emitted) :], text
        return new

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        text = self._text()
        return "" if text.endswith("\ufffd") else self._emit(text)

    def flush(self) -> str:
        return self._emit(self._text())
