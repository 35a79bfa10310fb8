"""Moved to :mod:`transformer_xl.run.schedule` (framework-neutral, shared with the TF trainer)."""

from transformer_xl.run.schedule import DevPerf, scheduled_lr  # noqa: F401
