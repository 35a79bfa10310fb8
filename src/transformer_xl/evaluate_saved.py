"""``txl eval`` in PyTorch: a saved model (a model, run or checkpoint folder, or a Hub repo id)
on a split of a prepared dataset, with the settings :func:`~transformer_xl.run.evaluation.eval_plan`
chooses; the loop itself is :func:`transformer_xl.evaluate.evaluate`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformer_xl.devices import cast_for_inference
from transformer_xl.evaluate import EvalResult, check_vocab, evaluate
from transformer_xl.progress import Progress
from transformer_xl.run.evaluation import eval_output, eval_plan
from transformer_xl.train.data import open_data
from transformer_xl.train.distributed import DistEnv, pick_device
from transformer_xl.weights import load_pretrained


def evaluate_model(
    model_path,
    *,
    data: str | None,
    split: str,
    changes: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress=None,
) -> tuple[EvalResult, dict[str, Any]]:
    """``txl eval``: ``changes`` (segment settings by name) and ``batch_size`` over the run's
    evaluation settings, else the model's config (batch size 10); see
    :func:`transformer_xl.run.evaluation.eval_plan`.
    Returns the result and the JSON record (:func:`~transformer_xl.run.evaluation.eval_output`)
    ``txl eval --json`` prints for either backend."""
    plan = eval_plan(model_path, data, changes, batch_size)
    model_dir, data, s = plan.model_dir, plan.data, plan.settings
    dev = pick_device(device, 0)
    # half precision: the weights cast once (no autocast: no casts per product and segment)
    model = cast_for_inference(load_pretrained(model_dir, map_location=dev), precision)
    ds = open_data(data, Path(model_path), env=DistEnv(0, 1, 0, dev))
    check_vocab(model_dir, model.config.vocab_size, ds.dataset)
    ds.check_ids([split])
    targets = ds.dataset.num_tokens(split) - 1
    if plan.batch_size > max(targets, 1):  # every stream needs a token to predict
        raise ValueError(
            f"batch size {plan.batch_size:,}: more parallel streams than the {targets:,} "
            f"tokens to predict in {data} ({split}); expected at most {max(targets, 1):,}"
        )
    batches = ds.eval_batches(
        split, batch_size=plan.batch_size, tgt_len=s.tgt_len, rank=0, world_size=1
    )
    with Progress(ds.dataset.num_tokens(split) - 1, f"eval {split}", stream=progress) as bar:
        res = evaluate(
            model,
            _counted(batches, bar),
            s,
            device=dev,
            bits=ds.bits,
        )
    info = eval_output(
        res.nll_sum, res.tokens, res.bits, model_dir=model_dir, data=str(ds.dataset.path),
        split=split, settings=plan.record(), precision=precision, backend="torch",
    )  # fmt: skip
    return res, info


def _counted(batches, bar):
    for batch in batches:
        yield batch
        bar.update(int(batch[2].sum()))
