"""torch.distributed for ``torchrun`` launches: process group, device, DDP/FSDP wrapping.

Parallelism is applied from outside the model. A single process (no ``WORLD_SIZE`` in the
environment, or 1) runs without any process group; ``torchrun`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` and we use NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda") or requested == "auto":
        if not torch.cuda.is_available():
            if requested == "auto":
                return torch.device("cpu")
            raise ValueError(f"train.device={requested!r} but CUDA is not available here")
        if requested.startswith("cuda:"):
            return torch.device(requested)
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    raise ValueError(f"train.device={requested!r} is unknown: expected auto, cpu, cuda or cuda:N")


def init_distributed(device: str = "auto") -> DistEnv:
    """Start the process group when launched by ``torchrun`` with more than one process."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv, parallel: str) -> nn.Module:
    """DDP (every rank holds the whole model) or FSDP2 (parameters sharded per attention and
    feed-forward block and for the remainder); the unwrapped model when there is one process."""
    if not env.distributed:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        for layer in model.layers:
            # the model projects the relative positions with each layer's attention before
            # the layer runs: that method must gather the parameters too
            fully_shard(layer.attn)
            register_fsdp_forward_method(layer.attn, "project_positions")
            fully_shard(layer.ff)
        return fully_shard(model)
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def no_grad_sync(wrapped: nn.Module, skip: bool):
    """Context in which backward passes accumulate locally without the all-reduce (all but the
    last chunk of a step); a no-op for a single process or ``skip=False``."""
    if not skip:
        return contextlib.nullcontext()
    if isinstance(wrapped, nn.parallel.DistributedDataParallel):
        return wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2

        @contextlib.contextmanager
        def fsdp_no_sync():
            wrapped.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                wrapped.set_requires_gradient_sync(True)

        return fsdp_no_sync()
    return contextlib.nullcontext()


def all_reduce(t: torch.Tensor, env: DistEnv, op=None) -> torch.Tensor:
    """In-place all-reduce (sum by default) of ``t``; a no-op for one process."""
    if env.distributed:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def broadcast_flag(flag: bool, env: DistEnv) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if not env.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=env.device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
