"""The small interface every method offers to the one training loop.

A method owns its branches, its losses and its test-time logits; the training
loop owns data, optimisation, checkpoints and metrics. Nothing else crosses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn


@dataclass
class StepOutput:
    """What one training step returns.

    ``loss`` is what the loop back-propagates; ``branch_losses`` are detached
    scalars for logging (one per branch, e.g. ``raw``, ``crop``, ``supcon``);
    ``logits`` are the raw-branch logits for a cheap train accuracy.
    """

    loss: torch.Tensor
    branch_losses: dict[str, torch.Tensor]
    logits: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class FGVCMethod(nn.Module):
    """Base class: subclasses set ``name``/``hparams`` and implement the two steps.

    ``hparams`` lists the method's own knobs with their defaults; the config
    validator, the search spaces and :func:`fgmodels.registry.create_method`
    all read it, so it is the single source of truth for what a method accepts.
    ``backbone_passes`` is how many backbone forwards one training image costs
    (used by the speed benchmark to compare against a plain single-pass model).
    """

    name: ClassVar[str] = ""
    hparams: ClassVar[dict[str, Any]] = {}
    backbone_passes: ClassVar[int] = 1
    default_backbone: ClassVar[str] = "resnet50"

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Logits the method is evaluated with (the paper's test-time rule).

        The loop calls it under ``torch.no_grad()``; a method that needs autograd
        at test time (Grad-CAM) re-enables it locally with ``torch.enable_grad()``."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for methods whose training changes with the epoch (alternation)."""

    def visualize(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Optional images (N, 3, H, W in [0, 1]) worth showing on a dashboard."""
        return {}

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]] | nn.Module:
        """Parameters handed to the optimiser factory; override for per-part lrs."""
        return self
