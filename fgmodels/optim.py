"""Optimiser phases and LR schedules for the shared training loop.

A run has one optimiser phase, or two when ``switch_epoch`` is set (AT-CNN's
Adam-then-SGD fine-tuning). Each phase gets a fresh optimiser, so no state
(Adam moments, SGD momentum) leaks from one phase into the next. Optimisers and
schedules are timm's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from timm.scheduler.scheduler import Scheduler

FUSABLE = frozenset({"sgd", "momentum", "adam", "adamw"})  # timm names whose torch optimiser has fused=True


def fused_for(opt: str, device_type: str) -> bool:
    """Fused (one-kernel) optimiser steps: on CUDA for the optimisers torch fuses."""
    return device_type == "cuda" and opt in FUSABLE


@dataclass(frozen=True)
class Phase:
    index: int
    opt: str
    lr: float
    start_epoch: int
    end_epoch: int  # exclusive


def phases(cfg: dict[str, Any]) -> list[Phase]:
    epochs = int(cfg["epochs"])
    switch = cfg.get("switch_epoch")
    if switch is None or int(switch) >= epochs:
        return [Phase(0, cfg["opt"], float(cfg["lr"]), 0, epochs)]
    switch = int(switch)
    if switch <= 0:
        raise ValueError(f"switch_epoch must be at least 1 (got {switch}); use opt={cfg['opt_after_switch']!r} alone instead")
    return [
        Phase(0, cfg["opt"], float(cfg["lr"]), 0, switch),
        Phase(1, cfg["opt_after_switch"], float(cfg["lr_after_switch"]), switch, epochs),
    ]


def phase_at(cfg: dict[str, Any], epoch: int) -> Phase:
    for phase in phases(cfg):
        if phase.start_epoch <= epoch < phase.end_epoch:
            return phase
    return phases(cfg)[-1]


def build_optimizer(model: nn.Module, cfg: dict[str, Any], phase: Phase, device: torch.device) -> torch.optim.Optimizer:
    params = model.param_groups(float(cfg["weight_decay"])) if hasattr(model, "param_groups") else model
    kwargs: dict[str, Any] = {}
    if phase.opt in ("sgd", "momentum", "nesterov"):
        kwargs["momentum"] = float(cfg["momentum"])
    if fused_for(phase.opt, device.type):
        kwargs["fused"] = True
    return create_optimizer_v2(
        params, opt=phase.opt, lr=phase.lr, weight_decay=float(cfg["weight_decay"]), **kwargs
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], phase: Phase) -> Scheduler:
    """Epoch-indexed schedule local to the phase (epoch 0 = the phase's first).

    Always a timm scheduler, even for a constant lr, because timm's schedulers
    are what apply a parameter group's ``lr_scale`` (e.g. RA-CNN's APN)."""
    length = phase.end_epoch - phase.start_epoch
    warmup = int(cfg.get("warmup_epochs") or 0) if phase.index == 0 else 0
    if cfg["sched"] == "cosine":
        return CosineLRScheduler(optimizer, t_initial=max(1, length), warmup_t=warmup, warmup_lr_init=phase.lr * 0.01)
    milestones: list[int] = []
    if cfg["sched"] == "multistep":
        milestones = [m - phase.start_epoch for m in cfg.get("lr_milestones") or [] if phase.start_epoch < m < phase.end_epoch]
    return MultiStepLRScheduler(
        optimizer, decay_t=milestones or [10**9], decay_rate=float(cfg["lr_gamma"]),
        warmup_t=warmup, warmup_lr_init=phase.lr * 0.01,
    )
