"""``baseline``: a timm backbone with a fresh linear head, one branch, plain CE.

The reference every multi-branch method is compared against.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fgmodels.knobs import KnobSet, knob
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method


@dataclass
class BaselineKnobs(KnobSet):
    label_smoothing: float = knob(0.0, "label smoothing of the cross-entropy", ge=0, le=1)


@register_method
class Baseline(FGVCMethod):
    name = "baseline"
    Knobs = BaselineKnobs
    hp: BaselineKnobs

    def __init__(self, num_classes: int, **cfg: Any) -> None:
        super().__init__(num_classes, **cfg)
        self.backbone = self.new_backbone()
        self.head = self.new_classifier(self.backbone.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(images)))

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hp.label_smoothing)
        return StepOutput(loss=loss, branch_losses={"ce": loss.detach()}, logits=logits.detach())

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)
