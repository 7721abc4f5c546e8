"""Optimizers and learning-rate schedules from the `train:` config."""

from __future__ import annotations

import math

import torch

from tunelab.config.base import ConfigError


def param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases and norm scales (1-D tensors) are not decayed."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def torch_optimizer_class(name: str):
    classes = {k.lower(): getattr(torch.optim, k) for k in dir(torch.optim)
               if isinstance(getattr(torch.optim, k), type) and issubclass(getattr(torch.optim, k), torch.optim.Optimizer)}
    cls = classes.get(name.lower())
    if cls is None:
        raise ConfigError(f"train.optimizer: unknown optimizer '{name}' (sgd, adam, adamw, adafactor, "
                          f"or a torch.optim class: {', '.join(sorted(c.__name__ for c in set(classes.values())))})")
    return cls


def build_optimizer(model, cfg) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ConfigError(f"train.method={cfg.method}: the model has no trainable parameters")
    name = cfg.optimizer.lower()
    extra = dict(cfg.optimizer_args)
    try:
        if name == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **extra)
        if name in ("adam", "adamw"):
            cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
            return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **extra)
        if name == "adafactor":
            from transformers.optimization import Adafactor

            # An explicit learning rate: Adafactor's relative step size ignores train.lr.
            extra = {"scale_parameter": False, "relative_step": False, "warmup_init": False, **extra}
            return Adafactor(groups, lr=cfg.lr, **extra)
        return torch_optimizer_class(cfg.optimizer)(groups, lr=cfg.lr, **extra)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.optimizer={cfg.optimizer}: {exc} (check train.optimizer_args)") from None


def lr_lambda(cfg, total_steps: int):
    """Multiplier of train.lr at each step: linear warmup from 0, then constant, linear or cosine."""
    warmup = cfg.warmup_steps or int(round(cfg.warmup_ratio * total_steps))
    floor = cfg.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if cfg.scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if cfg.scheduler == "linear":
            return floor + (1.0 - floor) * (1.0 - progress)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(optimizer, cfg, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
