"""Choosing a ``tf.distribute`` strategy and handing each replica its rows.

The model knows nothing of devices: the trainer creates it inside ``strategy.scope()`` and runs
its step with ``strategy.run``. Replica ``r`` of ``R`` gets rows ``[r * B/R, (r + 1) * B/R)`` of
every global batch, as the PyTorch streams shard (docs/tensorflow.md, "Data").
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "tpu")


def split_cpu(n: int) -> None:
    """Make ``n`` logical CPU devices (``/cpu:0`` ... ) out of the physical CPU, to test
    multi-device code without accelerators. Must run before TensorFlow initialises its devices."""
    if n < 2:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        raise ValueError(
            f"cannot split the CPU into {n} logical devices: TensorFlow has already initialised "
            "its devices in this process (do it first thing, in a fresh process)"
        ) from None


def make_strategy(
    kind: str = "auto", *, devices: list[str] | None = None, tpu: str | None = None
) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (``MirroredStrategy`` over ``devices``, default:
    every GPU, or every logical CPU when there is no GPU), ``tpu`` (``TPUStrategy``; ``tpu`` is
    the TPU name or ``grpc://`` address, ``"local"`` on a TPU VM) or ``auto`` (mirrored when
    several GPUs are visible, else default)."""
    if kind not in STRATEGIES:
        raise ValueError(f"strategy {kind!r} is unknown: expected one of {STRATEGIES}")
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "auto":
        kind = "mirrored" if len(gpus) > 1 else "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if devices is None:
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def rows_per_replica(strategy: tf.distribute.Strategy, batch_size: int) -> int:
    n = strategy.num_replicas_in_sync
    if batch_size % n:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {n} replicas")
    return batch_size // n


def distribute_rows(strategy: tf.distribute.Strategy, t: tf.Tensor):
    """A global ``[B, ...]`` tensor -> per-replica values holding each replica's rows."""
    if strategy.num_replicas_in_sync == 1:
        return t
    b = rows_per_replica(strategy, int(t.shape[0]))

    def rows(ctx):
        r = ctx.replica_id_in_sync_group
        return t[r * b : (r + 1) * b]

    return strategy.experimental_distribute_values_from_function(rows)


def gather_rows(strategy: tf.distribute.Strategy, value) -> tf.Tensor:
    """Per-replica ``[b, ...]`` values -> the global ``[B, ...]`` tensor (replica order)."""
    parts = strategy.experimental_local_results(value)
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)


def first_replica(strategy: tf.distribute.Strategy, value) -> tf.Tensor:
    """One replica's copy of a value that is equal on all of them (e.g. all-reduced)."""
    return strategy.experimental_local_results(value)[0]
