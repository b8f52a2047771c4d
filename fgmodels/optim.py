"""Optimiser phases and LR schedules for the shared training loop.

A run has one optimiser phase, or two (AT-CNN's Adam-then-SGD fine-tuning). One
training rule, ``switch``, says when the second phase (``opt_after_switch`` at
``lr_after_switch``) starts:

* ``epoch``: after ``switch_epoch`` completed epochs (``switch_epoch: null``: never),
  continuing from the current weights;
* ``plateau``: once ``val_acc`` has not improved for ``switch_patience`` epochs,
  restarting from the BEST weights so far (the loop restores them). The point
  is a pure function of the completed epochs' metrics (:func:`switch_point`),
  so a resumed run switches where an uninterrupted one would. A run without a
  validation split (a final fit on train + val) cannot see a plateau: it
  switches at ``switch_epoch`` instead, which the final fit sets to where the
  search's trial switched (:func:`replay_switch`) when that is known; with
  ``switch_epoch: null`` it keeps the first optimiser.

Each phase gets a fresh optimiser, so no state (Adam moments, SGD momentum)
leaks from one phase into the next. Optimisers and schedules are timm's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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


def switch_point(cfg: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = (),
                 validated: bool = True) -> int | None:
    """Completed epochs after which the second phase starts, as far as ``history``
    (the metrics of the completed epochs, in order) tells; None: no switch (yet).

    ``plateau``: the first epoch count d after which the best ``val_acc`` of
    epochs 1..d was set ``switch_patience`` or more epochs earlier. Without a
    validation split (``validated=False``) and for ``epoch``: ``switch_epoch``.
    A point at or after the last epoch is no switch.
    """
    epochs = int(cfg["epochs"])
    point = cfg.get("switch_epoch")
    if cfg.get("switch", "epoch") == "plateau" and validated:
        point, best, best_at = None, -math.inf, 0
        for done, metrics in enumerate(history, start=1):
            if metrics["val_acc"] > best:
                best, best_at = metrics["val_acc"], done
            elif done - best_at >= int(cfg["switch_patience"]):
                point = done
                break
    return None if point is None or int(point) >= epochs else int(point)


def replay_switch(cfg: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Config overrides that make a run without validation (a final fit) switch
    where the run that wrote ``history`` switched: ``{"switch_epoch": n}``, n the
    epochs before its first second-phase epoch, or None when it never switched.
    Empty for ``switch: epoch`` (the config already says where)."""
    if cfg.get("switch", "epoch") != "plateau":
        return {}
    second = [m["epoch"] for m in history if m.get("opt_phase") == 1]
    return {"switch_epoch": int(second[0]) - 1 if second else None}


def phases(cfg: Mapping[str, Any], switch_at: int | None | str = "planned") -> list[Phase]:
    """The run's phases, the second starting after ``switch_at`` completed epochs
    (None: one phase); ``"planned"``: where the config alone puts it (``switch_epoch``)."""
    epochs = int(cfg["epochs"])
    switch = switch_point(cfg, validated=False) if switch_at == "planned" else switch_at
    if switch is None or int(switch) >= epochs:
        return [Phase(0, cfg["opt"], float(cfg["lr"]), 0, epochs)]
    switch = int(switch)
    if switch <= 0:
        raise ValueError(f"switch_epoch must be at least 1 (got {switch}); use opt={cfg['opt_after_switch']!r} alone instead")
    return [
        Phase(0, cfg["opt"], float(cfg["lr"]), 0, switch),
        Phase(1, cfg["opt_after_switch"], float(cfg["lr_after_switch"]), switch, epochs),
    ]


def phase_at(cfg: Mapping[str, Any], epoch: int, switch_at: int | None | str = "planned") -> Phase:
    """The phase of the epoch after ``epoch`` completed ones (see :func:`phases` for ``switch_at``)."""
    planned = phases(cfg, switch_at)
    for phase in planned:
        if phase.start_epoch <= epoch < phase.end_epoch:
            return phase
    return planned[-1]


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
