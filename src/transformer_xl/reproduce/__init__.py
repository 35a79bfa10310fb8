"""``txl reproduce``: the paper's claims measured at small scale (ablation, evaluation-length
curve, RECL, evaluation speed). See docs/reproduce.md."""

from transformer_xl.reproduce.run import Plan, plan_for, reproduce

__all__ = ["Plan", "plan_for", "reproduce"]
