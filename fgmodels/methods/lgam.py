"""``lgam``: a timm ResNet with an LGAM after chosen stages, linear head, plain CE.

See :mod:`fgmodels.lgam_module` for the module and the choices made where the
paper is vague. The LGAMs start as the identity (zero output scale), so with
pretrained weights the initial network is exactly the pretrained one.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgmodels.backbones import create_backbone
from fgmodels.lgam_module import attach_lgam, parse_stages
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method


@register_method
class LGAMMethod(FGVCMethod):
    name = "lgam"
    default_backbone = "resnet50"
    hparams: dict[str, Any] = {
        "groups": 4,  # G; must divide every chosen stage's channels
        "reduction": 8,  # r; hidden width C'/r (G=4, r=8 gives +0.025M on CIFAR ResNet-18)
        "stages": "1,2,3,4",  # paper: after every stage
        "spatial_pool": "sum",  # paper eq. (5); "mean" avoids a saturated spatial map
    }

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        drop_rate: float = 0.0,
        groups: int = 4,
        reduction: int = 8,
        stages: str | list[int] = "1,2,3,4",
        spatial_pool: str = "sum",
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained, checkpoint_path)
        self.lgams = attach_lgam(self.backbone, parse_stages(stages), groups, reduction, spatial_pool)
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(images)))

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        return StepOutput(loss=loss, branch_losses={"ce": loss.detach()}, logits=logits.detach())

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)
