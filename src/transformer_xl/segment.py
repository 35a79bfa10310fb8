"""Segment settings: how a stream of tokens is cut into segments and how much memory each sees.

One frozen, validated dataclass, :class:`SegmentSettings`, travels as one argument through the
model's ``forward``, ``evaluate``, ``StreamingLM`` and generation (their ``settings=``). A model
config holds one as its defaults (``config.segment``), a train config two (``segment`` for
training, ``eval_segment`` for evaluation); every call may pass another; nothing writes it back
onto a model.
Framework-neutral (no torch, no TensorFlow), so the run layer and both backends share it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# How many keys a query sees with ``same_length``: the names say what the window is.
WINDOW_KEYS = ("mem_len+1", "mem_len")
# Spellings in files written by earlier versions (``same_length_keys``), named after the authors'
# code that follows each rule: TensorFlow (the published results) and PyTorch (and HF's port).
LEGACY_WINDOW_KEYS = {"tf": "mem_len+1", "torch": "mem_len"}
FIELDS = ("tgt_len", "mem_len", "ext_len", "clamp_len", "same_length", "window_keys")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _window_keys_from_legacy(value: str) -> str:
    """``"tf"`` / ``"torch"`` (``same_length_keys`` in old files) -> ``"mem_len+1"`` /
    ``"mem_len"``."""
    if value not in LEGACY_WINDOW_KEYS:
        raise ValueError(
            f"same_length_keys={value!r} is invalid: expected one of {sorted(LEGACY_WINDOW_KEYS)} "
            f"(or give window_keys, one of {WINDOW_KEYS})"
        )
    return LEGACY_WINDOW_KEYS[value]


def same_length_window(mem_len: int, window_keys: str) -> int:
    """The same-length rule, written once: the number of keys each query sees, the query's own
    position included (``mem_len + 1`` or ``mem_len``)."""
    return mem_len + 1 if window_keys == "mem_len+1" else mem_len


@dataclass(frozen=True)
class SegmentSettings:
    """Run-time segment settings.

    Attributes:
        tgt_len: segment length (tokens predicted per step).
        mem_len: memory length (hidden states kept from earlier segments).
        ext_len: extended context: the last ``ext_len`` tokens of a segment are context for the
            next one and are left out of the memory.
        clamp_len: relative distances above this use this one's encoding; -1 = no clamp.
        same_length: every query attends to the same number of keys.
        window_keys: that number with ``same_length``: ``"mem_len+1"`` (the authors' TensorFlow
            code, which produced the published results) or ``"mem_len"`` (their PyTorch code and
            HF's port).
    """

    tgt_len: int = 128
    mem_len: int = 128
    ext_len: int = 0
    clamp_len: int = -1
    same_length: bool = False
    window_keys: str = "mem_len+1"

    def __post_init__(self) -> None:
        def fail(name: str, allowed: str) -> None:
            value = getattr(self, name)
            raise ValueError(f"{name}={value!r} is invalid: expected {allowed}")

        if not _is_int(self.tgt_len) or self.tgt_len < 1:
            fail("tgt_len", "a positive integer")
        for name in ("mem_len", "ext_len"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "an integer >= 0")
        if not _is_int(self.clamp_len) or self.clamp_len == 0 or self.clamp_len < -1:
            fail("clamp_len", "-1 (no clamp) or a positive distance")
        if not isinstance(self.same_length, bool):
            fail("same_length", "true or false")
        if self.window_keys not in WINDOW_KEYS:
            fail("window_keys", f"one of {WINDOW_KEYS}")
        if self.same_length and self.window is not None and self.window < 1:
            fail("mem_len", "mem_len >= 1 with same_length and window_keys='mem_len' (no key)")

    @property
    def window(self) -> int | None:
        """Keys each query sees with ``same_length`` (None without it)."""
        if not self.same_length:
            return None
        return same_length_window(self.mem_len, self.window_keys)

    def replace(self, **changes: Any) -> SegmentSettings:
        """A validated copy with some fields changed (unknown names refused)."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown segment setting(s) {unknown}: expected some of {FIELDS}")
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], source: str = "segment", base: SegmentSettings | None = None
    ) -> SegmentSettings:
        """From a JSON object as :meth:`to_dict` writes it, over ``base`` (default: the defaults)
        for the fields left out; unknown fields refused. Files written before ``window_keys``
        hold ``same_length_keys`` ``"tf"``/``"torch"``: read here, the one place that knows it.
        A bad field is named ``source.FIELD``."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}={d!r} is invalid: expected a mapping of {FIELDS}")
        d = dict(d)
        if "same_length_keys" in d:
            legacy = d.pop("same_length_keys")
            try:
                window = _window_keys_from_legacy(legacy)
            except ValueError as e:
                raise ValueError(f"{source}.{e}") from None
            if d.setdefault("window_keys", window) != window:
                raise ValueError(
                    f"{source}: same_length_keys={legacy!r} and window_keys="
                    f"{d['window_keys']!r} disagree (give window_keys only)"
                )
        try:
            return (base or cls()).replace(**d)
        except ValueError as e:  # "FIELD=VALUE is invalid: ..." or "unknown segment setting(s)"
            field_named = str(e).split("=")[0] in FIELDS
            raise ValueError(f"{source}.{e}" if field_named else f"{source}: {e}") from None


def settings_or(default: SegmentSettings, settings: SegmentSettings | None) -> SegmentSettings:
    """The settings of one call: ``settings``, else ``default`` (a model config's)."""
    if settings is None:
        return default
    if not isinstance(settings, SegmentSettings):
        raise ValueError(f"settings must be a SegmentSettings, got {type(settings).__name__}")
    return settings


def given_flags(args: Any) -> dict[str, Any]:
    """The settings a command line gave (an ``argparse`` namespace with a ``--tgt-len`` /
    ``--mem-len`` / ... flag per field it takes, None where not given), by field name."""
    values = {name: getattr(args, name, None) for name in FIELDS}
    return {name: value for name, value in values.items() if value is not None}


def flag_name(field: str) -> str:
    """The command-line flag of a setting: ``mem_len`` -> ``--mem-len``."""
    return "--" + field.replace("_", "-")


def with_flags(base: SegmentSettings, flags: dict[str, Any]) -> SegmentSettings:
    """``base`` with the settings given as command-line flags (``{"mem_len": 64}``) changed; a
    refusal names the flag as typed (``--mem-len=-1 is invalid: ...``)."""
    try:
        return base.replace(**flags)
    except ValueError as e:  # "FIELD=VALUE is invalid: expected ..."
        name, _, rest = str(e).partition("=")
        raise ValueError(f"{flag_name(name)}={rest}" if name in FIELDS else str(e)) from None
