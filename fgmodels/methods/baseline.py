"""``baseline``: a timm backbone with a fresh linear head, one branch, plain CE.

The reference every multi-branch method is compared against.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgmodels.backbones import create_backbone
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method


@register_method
class Baseline(FGVCMethod):
    name = "baseline"
    hparams: dict[str, Any] = {"label_smoothing": 0.0}

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        drop_rate: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained, checkpoint_path)
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.backbone.num_features, num_classes)
        self.label_smoothing = label_smoothing

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(images)))

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return StepOutput(loss=loss, branch_losses={"ce": loss.detach()}, logits=logits.detach())

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)
