"""Optimizers: Adam, AdamW, SGD and Adagrad from torch, and LAMB (You et al. 2019) written here."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from transformer_xl.run.config import TrainConfig


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments (LAMB).

    Per parameter ``w`` with gradient ``g`` at step ``t``:
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``u = m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * w``,
    ``w -= lr * r * u`` with the trust ratio ``r = ||w|| / ||u||`` (1 when either norm is 0).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lamb: invalid lr={lr}, betas={betas}, eps={eps}, wd={weight_decay}")
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] += 1
                t = st["step"]  # a tensor: no host sync for the bias corrections
                g = p.grad.float() if p.dtype != torch.float32 else p.grad
                st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat = st["exp_avg"] / (1 - torch.pow(b1, t))
                v_hat = st["exp_avg_sq"] / (1 - torch.pow(b2, t))
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * p
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
                p.sub_(group["lr"] * trust * update)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only; biases, layer-norm gains and the u/v vectors go without."""
    if weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fast_impl(params: Iterable[torch.Tensor]) -> dict:
    """torch's fastest optimizer implementation for these parameters: ``fused=True`` (one kernel
    for all parameters, no host sync) where every parameter is a plain dense float tensor on
    the CPU or a CUDA device; otherwise torch's own default (e.g. FSDP's sharded tensors)."""
    params = list(params)
    plain = all(
        type(p.data) is torch.Tensor
        and p.layout == torch.strided
        and p.dtype.is_floating_point
        and p.device.type in ("cpu", "cuda")
        for p in params
    )
    return {"fused": True} if params and plain else {}


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups: Iterable = param_groups(model, cfg.weight_decay)
    betas = (cfg.beta1, cfg.beta2)
    impl = fast_impl(p for p in model.parameters() if p.requires_grad)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **impl
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **impl
        )
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **impl
        )
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(
            groups, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay, **impl
        )
    if cfg.optimizer == "lamb":
        return Lamb(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer={cfg.optimizer!r} is unknown")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
