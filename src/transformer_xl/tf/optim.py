"""Optimizers, learning-rate schedules and the float16 loss scale of the TensorFlow trainer.

The update formulas are the PyTorch trainer's (``torch.optim`` Adam, AdamW, SGD and Adagrad, and
the project's LAMB; weight decay only on matrices), so both trainers take the same steps from the
same weights and gradients (``tests/test_tf_train.py`` checks this against ``torch.optim``).

Updates are computed in the replica context from all-reduced gradients (identical on every
replica) and written with :func:`assign_all`, which works under any ``tf.distribute`` strategy.
"""

from __future__ import annotations

import math

import tensorflow as tf

OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad", "lamb")
SCHEDULERS = ("cosine", "inv_sqrt", "constant", "dev_perf")
SLOTS = {
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "lamb": ("exp_avg", "exp_avg_sq"),
    "sgd": ("momentum_buffer",),
    "adagrad": ("sum",),
}


def assign_all(pairs: list[tuple[tf.Variable, tf.Tensor]]) -> None:
    """From the replica context: ``var.assign(value)`` for every pair, on every replica's copy
    (values must be equal across replicas, as they are after an all-reduce)."""
    variables = [v for v, _ in pairs]

    def merged(strategy, values):
        for var, value in zip(variables, values, strict=True):
            strategy.extended.update(var, lambda v, x: v.assign(x), args=(value,), group=False)

    tf.distribute.get_replica_context().merge_call(merged, args=([x for _, x in pairs],))


class Optimizer:
    """One of :data:`OPTIMIZERS` over ``params`` (name -> ``tf.Variable``).

    Slot variables are created here: construct it inside ``strategy.scope()``. ``state()`` /
    ``variables()`` expose them by name for checkpoints."""

    def __init__(
        self,
        params: dict[str, tf.Variable],
        kind: str = "adam",
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
    ) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"optimizer {kind!r} is unknown: expected one of {OPTIMIZERS}")
        self.kind, self.params = kind, params
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay, self.momentum = weight_decay, momentum
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="optimizer/step")
        slots = SLOTS[kind] if kind != "sgd" or momentum > 0 else ()
        self.slots = {
            f"{slot}.{name}": tf.Variable(
                tf.zeros(p.shape, p.dtype), trainable=False, name=f"optimizer/{slot}/{name}"
            )
            for name, p in params.items()
            for slot in slots
        }

    def variables(self) -> dict[str, tf.Variable]:
        """Every state variable by a stable name (``step`` and ``<slot>.<param>``)."""
        return {"step": self.step, **self.slots}

    def _decay(self, name: str) -> float:
        """Weight decay of a parameter: matrices only (as the PyTorch trainer's groups)."""
        return self.weight_decay if self.params[name].shape.rank >= 2 else 0.0

    def updates(self, grads: dict[str, tf.Tensor], lr, apply=True) -> list[tuple]:
        """``(variable, new value)`` pairs of one step (the step counter included); where
        ``apply`` is false every variable keeps its value (a skipped step)."""
        # bias corrections in float64, as torch computes them in Python: in float32,
        # 1 - 0.999**1 loses five digits to cancellation
        t = tf.cast(self.step + 1, tf.float64)
        lr64 = tf.cast(lr, tf.float64)
        lr = tf.cast(lr, tf.float32)
        b1, b2, eps = self.beta1, self.beta2, self.eps
        out = [(self.step, self.step + 1)]
        for name in sorted(grads):
            p, g, wd = self.params[name], tf.cast(grads[name], tf.float32), self._decay(name)
            slot = lambda s, name=name: self.slots[f"{s}.{name}"]  # noqa: E731
            new: list[tuple[tf.Variable, tf.Tensor]] = []
            if self.kind in ("adam", "adamw", "lamb"):
                if self.kind == "adam" and wd:
                    g = g + wd * p
                m = b1 * slot("exp_avg") + (1 - b1) * g
                v = b2 * slot("exp_avg_sq") + (1 - b2) * g * g
                new += [(slot("exp_avg"), m), (slot("exp_avg_sq"), v)]
                bias1 = 1 - tf.pow(tf.constant(b1, tf.float64), t)
                bias2 = 1 - tf.pow(tf.constant(b2, tf.float64), t)
                if self.kind == "lamb":
                    u = (m / tf.cast(bias1, tf.float32)) / (
                        tf.sqrt(v / tf.cast(bias2, tf.float32)) + eps
                    )
                    if wd:
                        u = u + wd * p
                    w_norm, u_norm = tf.norm(p), tf.norm(u)
                    ok = (w_norm > 0) & (u_norm > 0)
                    trust = tf.where(ok, w_norm / tf.where(ok, u_norm, 1.0), 1.0)
                    new.append((p, p - lr * trust * u))
                else:
                    base = p * (1 - lr * wd) if self.kind == "adamw" and wd else p
                    step_size = tf.cast(lr64 / bias1, tf.float32)
                    denom = tf.sqrt(v) / tf.cast(tf.sqrt(bias2), tf.float32) + eps
                    new.append((p, base - step_size * m / denom))
            else:
                if wd:
                    g = g + wd * p
                if self.kind == "adagrad":
                    s = slot("sum") + g * g
                    new += [(slot("sum"), s), (p, p - lr * g / (tf.sqrt(s) + eps))]
                elif self.momentum > 0:
                    first = tf.equal(self.step, 0)  # torch starts the buffer at the gradient
                    buf = tf.where(first, g, self.momentum * slot("momentum_buffer") + g)
                    new += [(slot("momentum_buffer"), buf), (p, p - lr * buf)]
                else:
                    new.append((p, p - lr * g))
            for var, value in new:
                out.append((var, value if apply is True else tf.where(apply, value, var)))
        return out


def scheduled_lr(
    step: int,
    *,
    lr: float,
    scheduler: str = "cosine",
    warmup_steps: int = 0,
    max_steps: int = 1,
    lr_min: float = 0.0,
    dev_scale: float = 1.0,
) -> float:
    """Learning rate of optimizer update ``step`` (1-based), the PyTorch trainer's schedules:
    linear warm-up, then cosine to ``lr_min`` / ``inv_sqrt`` / ``constant`` / ``dev_perf``
    (``lr * dev_scale``, never below ``lr_min``)."""
    k, warm = max(step, 1), warmup_steps
    if scheduler == "inv_sqrt":
        return lr * (min(k / warm, math.sqrt(warm / k)) if warm else 1.0 / math.sqrt(k))
    if warm and k <= warm:
        return lr * k / warm
    if scheduler == "cosine":
        p = min((k - warm) / max(max_steps - warm, 1), 1.0)
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * p))
    if scheduler == "dev_perf":
        return max(lr * dev_scale, lr_min)
    return lr


class LossScale:
    """Dynamic loss scaling for float16 (``torch.cuda.amp.GradScaler``'s defaults): start at
    2^16, halve on a non-finite gradient (the step is skipped), double after 2000 good steps."""

    def __init__(self, initial: float = 2.0**16, growth_interval: int = 2000) -> None:
        self.scale = tf.Variable(initial, dtype=tf.float32, trainable=False, name="loss_scale")
        self.good = tf.Variable(0, dtype=tf.int64, trainable=False, name="loss_scale/good")
        self.growth_interval = growth_interval

    def variables(self) -> dict[str, tf.Variable]:
        return {"loss_scale": self.scale, "loss_scale_good_steps": self.good}

    def updates(self, finite: tf.Tensor) -> list[tuple]:
        good = tf.where(finite, self.good + 1, tf.zeros_like(self.good))
        grow = good >= self.growth_interval
        scale = tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), self.scale * 0.5)
        return [(self.scale, scale), (self.good, tf.where(grow, tf.zeros_like(good), good))]
