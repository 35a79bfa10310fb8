"""``txl plot RUN``: the loss curves of a run (from ``metrics.jsonl``) as a PNG.

Needs matplotlib (``pip install 'transformer-xl[plot]'``).
"""

from __future__ import annotations

import os
from pathlib import Path

from transformer_xl.fileio import atomic_output
from transformer_xl.run.folder import RunFolder
from transformer_xl.train.metrics import read_metrics


def curves(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """``{"train/loss": (steps, values), "valid/loss": ..., "train/lr": ...}`` from the records,
    skipped steps left out."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        if r.get("skipped"):
            continue
        for key in ("loss", "bpc", "ppl", "lr"):
            if r.get(key) is not None and "split" in r:
                steps, values = out.setdefault(f"{r['split']}/{key}", ([], []))
                steps.append(r["step"])
                values.append(r[key])
    return out


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records:
        raise ValueError(f"{run_dir}: no {RunFolder.METRICS} records to plot (is it a run folder?)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("txl plot needs matplotlib: pip install 'transformer-xl[plot]'") from None

    c = curves(records)
    score = "bpc" if any(k.endswith("/bpc") for k in c) else "ppl"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for split, style in (("train", "-"), ("valid", "o-"), ("test", "s")):
        if f"{split}/{score}" in c:
            ax1.plot(*c[f"{split}/{score}"], style, label=split, markersize=4)
    ax1.set(xlabel="step", ylabel=score, title=f"{run_dir.name}: {score}")
    if score == "ppl":
        ax1.set_yscale("log")
    ax1.grid(alpha=0.3)
    ax1.legend()
    if "train/lr" in c:
        ax2.plot(*c["train/lr"], color="tab:green")
    ax2.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "curves.png"
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
