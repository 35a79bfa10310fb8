"""Generation lives beside the model in :mod:`transformer_xl.model.generate`; this module keeps
``transformer_xl.generate`` importable for code written against earlier versions."""

from transformer_xl.model.generate import *  # noqa: F403  (the same names, re-exported)
from transformer_xl.model.generate import __all__ as _names

__all__ = list(_names)
