"""Optimisers and learning-rate schedules from a :class:`~rnnkit.training.config.TrainConfig`.

- ``adam``, ``adamw``, ``sgd`` (with ``momentum``): torch's; Adam and AdamW fused (``fused=True``) where
  every parameter allows it.
- ``ntasgd``: non-monotonically triggered averaged SGD (Merity, Keskar & Socher 2018, AWD-LSTM):
  plain SGD until the validation loss has not improved on the best of all checks older than the last
  ``ntasgd_patience`` ones, then :class:`torch.optim.ASGD` (``t0=0, lambd=0``: a running average of
  the iterates from the switch on); validation and the saved model use the averaged weights.
- Schedules: ``constant`` and ``cosine`` (to ``min_lr`` over the run, both with linear ``warmup_steps``)
  step every optimiser step; a run with a wall-clock budget (the task's ``budget_progress``) follows
  cosine by whichever is further along, steps or time, so the rate reaches ``min_lr`` as the budget
  ends; ``step`` and ``exponential`` every epoch; ``plateau`` (torch's
  ``ReduceLROnPlateau``) after every validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from rnnkit.training.config import TrainConfig


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig, averaged: bool = False) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=_fusable(params))
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=_fusable(params))
    if cfg.optimizer == "sgd" or (cfg.optimizer == "ntasgd" and not averaged):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "ntasgd":
        return torch.optim.ASGD(params, lr=cfg.lr, t0=0, lambd=0.0, weight_decay=cfg.weight_decay)
    raise AssertionError(cfg.optimizer)  # validated by TrainConfig


def _fusable(params: list[nn.Parameter]) -> bool | None:
    """torch's fused Adam (one kernel over all parameters; the same update, ~4x faster than the default
    per-tensor loop on CPU, where torch does not pick it by itself) when every parameter is a real
    floating-point tensor on CPU or CUDA; otherwise torch's default."""
    ok = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
    return True if ok and params else None


def schedule_interval(cfg: TrainConfig) -> str:
    """When the scheduler steps: "step", "epoch" or "validation"."""
    return {"constant": "step", "cosine": "step", "step": "epoch", "exponential": "epoch",
            "plateau": "validation"}[cfg.schedule]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int,
                    time_progress: Callable[[], float] | None = None):
    """The scheduler of ``cfg.schedule``; ``time_progress()`` is the fraction of a time budget spent."""
    if cfg.schedule in ("constant", "cosine"):
        warm, floor = cfg.warmup_steps, cfg.min_lr / cfg.lr
        total = max(total_steps, warm + 1)

        def factor(step: int) -> float:
            if warm and step < warm:
                return (step + 1) / warm
            if cfg.schedule == "constant":
                return 1.0
            progress = min(1.0, (step - warm) / max(1, total - warm))
            if time_progress is not None:
                progress = max(progress, min(1.0, time_progress()))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma)
    if cfg.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, cfg.gamma)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.gamma, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    raise AssertionError(cfg.schedule)


def ntasgd_should_switch(history: list[float], patience: int) -> bool:
    """Merity et al.'s trigger: the newest loss is worse than the best loss older than ``patience`` checks."""
    if len(history) <= patience:
        return False
    return history[-1] > min(history[:-patience])


def averaged_parameters(optimizer: torch.optim.Optimizer) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(parameter, its running average) pairs of an ASGD optimiser that has stepped."""
    pairs = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            ax = optimizer.state.get(p, {}).get("ax")
            if ax is not None:
                pairs.append((p, ax))
    return pairs
