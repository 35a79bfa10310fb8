"""``txl reproduce``: plan the sizes from the budget, train the ablation's models, measure,
write the report. See docs/reproduce.md."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import transformer_xl.reproduce.measure as measure
import transformer_xl.reproduce.recl as recl
from transformer_xl.config import TransformerXLConfig
from transformer_xl.data.prepared import load_prepared
from transformer_xl.reproduce.corpus import corpus_source, prepare_stdlib
from transformer_xl.reproduce.report import environment, write_outputs
from transformer_xl.reproduce.variants import BY_NAME, VARIANTS, match_parameters
from transformer_xl.run.config import TrainConfig
from transformer_xl.segment import SegmentSettings

SPEED_LENGTHS = (800, 1800, 2800, 3800)  # the paper's evaluation-speed table
CURVE_MULTIPLES = (0, 1, 2, 3, 4, 6, 8, 10)  # evaluation memory / training segment
EVAL_MEM_MULTIPLES = (2, 3, 4, 6, 8, 10)  # the memory models' candidates, chosen on valid


@dataclass(frozen=True)
class Plan:
    """Every size of a reproduction; :func:`plan_for` derives them from the budget."""

    budget_min: float
    device: str
    seeds: int = 2
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    d_inner: int = 512
    tgt_len: int = 64
    mem_len: int = 64
    batch_size: int = 16
    lr: float = 1e-3
    steps: int = 900
    eval_mem_mult: int = 4  # evaluation memory x segment when there is no validation split
    slide_stride: int = 16  # memoryless models: sliding-window stride at evaluation
    eval_batch: int = 16
    curve_tokens: int = 60_000  # test labels scored per curve point (capped by the split)
    recl_positions: int = 600
    speed_windows: int = 3
    speed_segments: int = 4
    speed_lengths: tuple[int, ...] = SPEED_LENGTHS

    @property
    def contexts(self) -> list[int]:
        delta = self.tgt_len // 2
        return [delta * k for k in range(1, 2 * max(CURVE_MULTIPLES) + 1)]


def plan_for(budget_min: float, device: str, seeds: int = 2) -> Plan:
    """The default sizes are for 30 minutes on 2 CPU cores; other budgets scale the steps and
    the measured samples linearly; a GPU (about 20x the throughput of 2 cores for models this
    small) scales them further."""
    if not budget_min > 0:
        raise ValueError(f"--budget {budget_min}: expected a positive number of minutes")
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: expected at least 1 (2 or more for a spread)")
    scale = budget_min / 30.0 * (20.0 if device.startswith("cuda") else 1.0) * 2 / max(seeds, 2)
    return Plan(
        budget_min=budget_min, device=device, seeds=seeds,
        steps=max(4, round(900 * scale)), curve_tokens=max(512, round(60_000 * scale)),
        recl_positions=max(8, round(600 * scale)),
    )  # fmt: skip


class Log:
    def __init__(self, stream=sys.stderr) -> None:
        self.t0, self.stream = time.perf_counter(), stream

    def __call__(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.0f}s] {msg}", file=self.stream, flush=True)


def open_dataset(data, out: Path, log: Log):
    """A prepared folder, or the default corpus prepared into ``OUT/data``."""
    if data is None:
        log("preparing the default corpus (the Python standard library's sources)")
        return prepare_stdlib(out / "data"), corpus_source()
    path = Path(data)
    if not path.is_dir():
        raise ValueError(f"--data {path}: not a folder (expected a prepared dataset, txl prepare)")
    ds = load_prepared(path)
    return ds, {"name": ds.meta.get("dataset", path.name), "path": str(path)}


def check_data(plan: Plan, ds) -> None:
    """Refuse, before any training, a dataset too small for the measurements."""
    for split in ("train", "test"):
        if split not in ds.splits:
            raise ValueError(f"{ds.path}: no {split} split (expected train, valid, test)")
    n_train, n_test = ds.num_tokens("train"), ds.num_tokens("test")
    if n_train < 2 * plan.batch_size * (plan.tgt_len + 1):
        raise ValueError(f"{ds.path}: the train split has {n_train:,} tokens, too few for "
                         f"batch {plan.batch_size} x segment {plan.tgt_len}")  # fmt: skip
    measure.context_grid_starts(n_test, plan.contexts, plan.recl_positions)  # raises if short
    need = max(plan.speed_lengths) + (plan.speed_segments + 2) * plan.tgt_len + 1
    if n_test < need:
        raise ValueError(f"{ds.path}: the test split has {n_test:,} tokens; the speed table at "
                         f"attention length {max(plan.speed_lengths)} needs {need:,}")  # fmt: skip


def base_config(plan: Plan, vocab_size: int) -> TransformerXLConfig:
    """The architecture every variant shares; a word-level vocabulary gets the adaptive
    softmax of the paper's WikiText-103 setting (cutoffs 20k, 40k, 200k, div_val 4)."""
    cutoffs = tuple(c for c in (20_000, 40_000, 200_000) if c < vocab_size)
    return TransformerXLConfig(
        vocab_size=vocab_size, n_layer=plan.n_layer, n_head=plan.n_head,
        d_model=plan.d_model, d_head=plan.d_model // plan.n_head, d_inner=plan.d_inner,
        dropout=0.0, segment=SegmentSettings(tgt_len=plan.tgt_len), cutoffs=cutoffs,
        div_val=4 if cutoffs else 1,
    )  # fmt: skip


def train_all(plan: Plan, ds, log: Log) -> tuple[dict, dict, dict]:
    base = base_config(plan, len(ds.vocab))
    configs = match_parameters(base, mem_len=plan.mem_len)
    for name, (cfg, n) in configs.items():
        log(f"{name}: {n:,} parameters (d_inner {cfg.d_inner})")
    train = ds.split("train")
    models, history = {}, {}
    for seed in range(plan.seeds):
        for v in VARIANTS:
            tc = TrainConfig(
                batch_size=plan.batch_size, lr=plan.lr, max_steps=plan.steps,
                segment=TrainConfig.segment.replace(tgt_len=plan.tgt_len),
                warmup_steps=max(1, plan.steps // 20), seed=1111 + seed,
                log_interval=max(1, plan.steps // 10), clip=0.25,
            )  # fmt: skip
            log(f"training {v.name} seed {seed}: {plan.steps} steps")
            cfg = configs[v.name][0]
            model, hist = measure.train_model(cfg, train, tc, device=plan.device, log=log)
            models[v.name, seed], history[f"{v.name}/seed{seed}"] = model, hist
    return configs, models, history


def choose_eval_memory(plan: Plan, ds, models: dict, bits: bool, log: Log) -> dict[str, dict]:
    """Per memory variant, the evaluation memory (longer than training: ``EVAL_MEM_MULTIPLES``
    x the segment) with the lowest loss on the validation split, seed 0, ``curve_tokens``
    labels; every seed is then tested with it. Without a validation split: ``eval_mem_mult``."""
    chosen = {}
    for v in VARIANTS:
        if not v.recurrence:
            continue
        if "valid" not in ds.splits or ds.num_tokens("valid") < 2:
            chosen[v.name] = {"mem_len": plan.eval_mem_mult * plan.tgt_len, "valid": {}}
            continue
        scores = {}
        for m in EVAL_MEM_MULTIPLES:
            res = measure.cached_eval(
                models[v.name, 0], ds.split("valid"), tgt_len=plan.tgt_len,
                mem_len=m * plan.tgt_len, batch_size=plan.eval_batch, device=plan.device,
                bits=bits, max_tokens=plan.curve_tokens,
            )  # fmt: skip
            scores[m * plan.tgt_len] = res.loss
        best = min(scores, key=scores.get)
        log(f"{v.name}: evaluation memory {best} (lowest validation loss of {sorted(scores)})")
        chosen[v.name] = {"mem_len": best, "valid": scores}
    return chosen


def ablation(plan: Plan, ds, models: dict, bits: bool, memory: dict, log: Log) -> list[dict]:
    test, rows = ds.split("test"), []
    for (name, seed), model in models.items():
        v = BY_NAME[name]
        if v.recurrence:
            mem = memory[name]["mem_len"]
            res = measure.cached_eval(
                model, test, tgt_len=plan.tgt_len, mem_len=mem, batch_size=plan.eval_batch,
                device=plan.device, bits=bits,
            )  # fmt: skip
            setting = f"cached memory {mem} (chosen on valid), segment {plan.tgt_len}"
        else:
            res = measure.sliding_eval(
                model, test, window=plan.tgt_len, stride=plan.slide_stride,
                batch_size=4 * plan.eval_batch, device=plan.device, bits=bits,
            )  # fmt: skip
            setting = f"sliding window {plan.tgt_len}, stride {plan.slide_stride}"
        log(f"test {name} seed {seed}: {res.summary()} ({setting})")
        rows.append({"variant": name, "seed": seed, "setting": setting, **res.to_dict()})
    return rows


def eval_curve(plan: Plan, ds, models: dict, bits: bool, log: Log) -> list[dict]:
    test, points = ds.split("test"), []
    for (name, seed), model in models.items():
        if not BY_NAME[name].recurrence or seed != 0:
            continue
        for m in CURVE_MULTIPLES:
            res = measure.cached_eval(
                model, test, tgt_len=plan.tgt_len, mem_len=m * plan.tgt_len,
                batch_size=plan.eval_batch, device=plan.device, bits=bits,
                max_tokens=plan.curve_tokens,
            )  # fmt: skip
            log(f"curve {name}: memory {m * plan.tgt_len}: {res.summary()}")
            points.append({
                "variant": name, "seed": seed, "mem_len": m * plan.tgt_len,
                "attn_len": m * plan.tgt_len + plan.tgt_len, **res.to_dict(),
            })  # fmt: skip
    return points


def context_losses(plan: Plan, ds, models: dict, log: Log) -> dict:
    test, contexts = ds.split("test"), plan.contexts
    starts, positions = measure.context_grid_starts(len(test), contexts, plan.recl_positions)
    losses = {}
    for v in VARIANTS:
        model = models[v.name, 0]
        # relative: one window serves every context; absolute: one window per context, as
        # their positions count from the window's end (contexts <= the trained length only)
        lengths = contexts[-1:] if v.relative else [c for c in contexts if c <= plan.tgt_len]
        windows = {
            n: measure.window_nll(
                model,
                test,
                starts,
                n,
                tgt_len=plan.tgt_len,
                relative=v.relative,
                batch_size=plan.eval_batch,
                device=plan.device,
            )  # fmt: skip
            for n in lengths
        }
        losses[v.name] = measure.per_context_losses(windows, starts, positions, contexts)
        log(f"per-context losses {v.name}: {len(positions)} positions x {len(contexts)} contexts")
    return {"contexts": contexts, "positions": positions.tolist(), "losses": losses}


def recl_table(ctx: dict) -> dict:
    names = list(ctx["losses"])
    stack = np.stack([ctx["losses"][n] for n in names])  # [models, K, P]
    out = {"models": names, "threshold": recl.PAPER_THRESHOLD, "by_ratio": {}}
    for r in recl.PAPER_RATIOS:
        res = recl.recl(stack, ctx["contexts"], r)
        out["by_ratio"][str(r)] = {n: asdict(x) for n, x in zip(names, res, strict=True)}
    out["gains_r0.1"] = recl.gain_matrix(stack, ctx["contexts"], 0.1)
    return out


def speed_table(plan: Plan, ds, models: dict, log: Log) -> list[dict]:
    test, rows = ds.split("test"), []
    for length in plan.speed_lengths:
        row = measure.time_per_token(
            models["xl", 0], test, length, tgt_len=plan.tgt_len, n_windows=plan.speed_windows,
            n_segments=plan.speed_segments, device=plan.device,
        )  # fmt: skip
        log(f"speed at {length}: sliding/cached = {row['speedup']:.1f}x")
        rows.append(row)
    return rows


def reproduce(*, data=None, out, budget: float = 30.0, seeds: int = 2, device: str = "cpu",
              plan: Plan | None = None, stream=sys.stderr) -> Path:  # fmt: skip
    """The whole of ``txl reproduce``; returns the report's path. ``plan`` replaces the sizes
    derived from the budget (tests use tiny ones)."""
    plan = plan or plan_for(budget, device, seeds)
    out = Path(out)
    log, t0, env = Log(stream), time.time(), environment()
    ds, source = open_dataset(data, out, log)
    check_data(plan, ds)
    out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be usable
    bits = ds.meta.get("unit") in ("byte", "char")
    configs, models, history = train_all(plan, ds, log)
    for (name, seed), model in models.items():  # safetensors + config.json, for later study
        model.save_pretrained(out / "models" / f"{name}-seed{seed}")
    results = {
        "plan": asdict(plan), "source": source, "environment": env,
        "dataset": {s: ds.num_tokens(s) for s in ds.splits}, "unit": ds.meta.get("unit"),
        "parameters": {n: {"parameters": p, "d_inner": c.d_inner} for n, (c, p) in configs.items()},
        "training": history,
        "eval_memory": (memory := choose_eval_memory(plan, ds, models, bits, log)),
        "ablation": ablation(plan, ds, models, bits, memory, log),
        "curve": eval_curve(plan, ds, models, bits, log),
    }  # fmt: skip
    ctx = context_losses(plan, ds, models, log)
    results["recl"] = recl_table(ctx)
    results["speed"] = speed_table(plan, ds, models, log)
    results["wall_s"] = time.time() - t0
    report = write_outputs(out, results, ctx)
    log(f"report: {report}")
    return report
