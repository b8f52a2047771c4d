"""``lgam``: a timm ResNet with an LGAM after chosen stages, linear head, plain CE.

LGAM, the Lightweight Group-wise Attention Module (Zhang, Li, Yang 2020), as
computed here for an input ``A`` [B, C, H, W] split into ``G`` channel groups
``x_1..x_G`` of ``C' = C / G`` channels (paper section 2):

* channel attention per group, eq. (1)-(3):
  ``s = GAP(x)``; ``w = sigmoid(ReLU(BN(MLP(s))))`` with the MLP
  ``Linear(C', C'/r) -> ReLU -> Linear(C'/r, C')`` (one hidden layer); then
  ``F(x) = w * x + x``. Order chosen from eq. (2) ``sigma(delta(MLP(s)))`` and
  the text "BN after the MLP": MLP -> BN -> ReLU -> sigmoid. Note the ReLU before
  the sigmoid pins the weights to [0.5, 1); kept because the paper writes it.
  Each group has its own MLP/BN (``F`` is per group).
* ladder, eq. (4): ``y_1 = F_1(x_1)``, ``y_k = F_k(x_k + y_{k-1})``; ``A' = cat(y)``.
  Each rung multiplies by (1 + w) >= 1.5, so the last group's scale grows
  roughly like 1.5..2 ** G: keep G small (the search offers G <= 8).
* spatial attention, eq. (5)-(6): ``M = sigmoid(ReLU(sum_c A'))`` [B, 1, H, W]
  (``spatial_pool="mean"`` divides by C instead: with non-negative post-ReLU
  stage outputs the paper's channel *sum* is large, so M saturates at 1).
* fusion, eq. (7): ``out = A' * M + A``, implemented as
  ``out = A + scale * (A' * M)`` with ``scale`` a learnable scalar initialised to
  0: the module starts as the exact identity, so inserting it into a pretrained
  network does not disturb it (eq. (7) would change every stage's output scale
  by a factor > 2 at initialisation). ``init_scale=1.0`` gives eq. (7) literally.

BatchNorm on [B, C'] vectors cannot compute batch statistics from a single
sample: in train mode with batch size 1 the BN here normalises with its running
statistics (and leaves them unchanged) instead of raising.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgmodels.knobs import ConfigError, KnobSet, knob
from fgmodels.layers.groups import check_groups, divisors
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method

SPATIAL_POOLS = ("sum", "mean")  # "sum" is the paper's eq. (5)


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that accepts a batch of one in train mode (uses running stats)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias,
                training=False, momentum=0.0, eps=self.eps,
            )
        return super().forward(x)


class GroupChannelAttention(nn.Module):
    """``F(x) = w(x) * x + x`` for one group, eq. (1)-(3)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // int(reduction))  # C'/r, at least one unit
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.bn = SafeBatchNorm1d(channels)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        return torch.sigmoid(F.relu(self.bn(self.fc2(F.relu(self.fc1(s))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None] + x


class LGAM(nn.Module):
    """Group-wise channel ladder + global spatial map, residual onto the input."""

    def __init__(
        self,
        channels: int,
        groups: int = 4,
        reduction: int = 8,
        spatial_pool: str = "sum",
        init_scale: float = 0.0,
    ) -> None:
        super().__init__()
        check_groups(channels, groups)
        if int(reduction) != reduction or reduction < 1:
            raise ValueError(f"LGAM: reduction r must be a positive integer, got {reduction!r}")
        if spatial_pool not in SPATIAL_POOLS:
            raise ValueError(f"LGAM: spatial_pool must be one of {SPATIAL_POOLS}, got {spatial_pool!r}")
        self.channels, self.groups, self.spatial_pool = channels, int(groups), spatial_pool
        self.group_att = nn.ModuleList(
            GroupChannelAttention(channels // self.groups, int(reduction)) for _ in range(self.groups)
        )
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))

    def ladder(self, a: torch.Tensor) -> torch.Tensor:
        """A' = cat(y_1..y_G) with y_k = F_k(x_k + y_{k-1}), eq. (4)."""
        if a.shape[1] != self.channels:
            raise ValueError(f"LGAM built for C={self.channels} channels got an input with {a.shape[1]}")
        ys: list[torch.Tensor] = []
        for x_k, f_k in zip(a.chunk(self.groups, dim=1), self.group_att):
            ys.append(f_k(x_k if not ys else x_k + ys[-1]))
        return torch.cat(ys, dim=1)

    def spatial_mask(self, a_prime: torch.Tensor) -> torch.Tensor:
        """M = sigmoid(ReLU(sum (or mean) over channels of A')), [B, 1, H, W]."""
        pooled = a_prime.sum(1, keepdim=True) if self.spatial_pool == "sum" else a_prime.mean(1, keepdim=True)
        return torch.sigmoid(F.relu(pooled))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        a_prime = self.ladder(a)
        return a + self.scale * (a_prime * self.spatial_mask(a_prime))


class LGAMStage(nn.Module):
    """A backbone stage followed by its LGAM (replaces ``resnet.layerK``)."""

    def __init__(self, stage: nn.Module, lgam: LGAM) -> None:
        super().__init__()
        self.stage = stage
        self.lgam = lgam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lgam(self.stage(x))


def parse_stages(stages: str | int | Iterable[int]) -> tuple[int, ...]:
    """``"3,4"``, ``[3, 4]`` or ``4`` -> (3, 4); stage k is timm ResNet ``layer{k}``."""
    if isinstance(stages, str):
        parts = [p for p in stages.replace(" ", "").split(",") if p]
        try:
            out = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"stages must be comma-separated integers in 1..4, got {stages!r}") from None
    elif isinstance(stages, int):
        out = [stages]
    else:
        out = [int(s) for s in stages]
    if not out or any(s not in (1, 2, 3, 4) for s in out) or len(set(out)) != len(out):
        raise ValueError(
            f"stages must be distinct ResNet stage numbers in 1..4 (timm layer1..layer4), e.g. '3,4'; got {stages!r}"
        )
    return tuple(sorted(out))


def resnet_stage_channels(backbone: nn.Module) -> dict[int, int]:
    """Output channels of timm ResNet ``layer1..layer4``; rejects other backbones."""
    if not all(hasattr(backbone, f"layer{k}") for k in (1, 2, 3, 4)):
        raise ConfigError(
            f"LGAM is inserted after ResNet stages layer1..layer4, but the backbone "
            f"{type(backbone).__name__} has none. Fix: use a timm ResNet-family backbone "
            f"(resnet18/34/50/101, resnext50_32x4d, wide_resnet50_2, seresnet50, test_resnet).",
            key="backbone",
        )
    info = getattr(backbone, "feature_info", None) or []
    chans = {}
    for entry in info:
        module = entry["module"] if isinstance(entry, dict) else entry.module
        if module in {f"layer{k}" for k in (1, 2, 3, 4)}:
            chans[int(module[-1])] = int(entry["num_chs"] if isinstance(entry, dict) else entry.num_chs)
    if len(chans) != 4:
        raise ValueError(f"cannot read stage channels from {type(backbone).__name__}.feature_info")
    return chans


def attach_lgam(
    backbone: nn.Module,
    stages: Sequence[int],
    groups: int,
    reduction: int,
    spatial_pool: str = "sum",
    init_scale: float = 0.0,
) -> dict[int, LGAM]:
    """Wrap ``backbone.layer{k}`` for each k in ``stages`` with an LGAM; returns them by stage."""
    chans = resnet_stage_channels(backbone)
    modules: dict[int, LGAM] = {}
    for k in stages:
        try:
            check_groups(chans[k], groups, where=f"LGAM after stage {k} (layer{k})")
        except ConfigError as err:
            common = sorted(set.intersection(*(set(divisors(chans[s])) for s in stages)))
            problem = str(err).split(". Fix:")[0]
            raise ConfigError(f"{problem}; G values valid for all chosen stages {list(stages)}: {common}. "
                              f"Fix: pick one of them.", key="groups") from None
        lgam = LGAM(chans[k], groups, reduction, spatial_pool, init_scale)
        setattr(backbone, f"layer{k}", LGAMStage(getattr(backbone, f"layer{k}"), lgam))
        modules[k] = lgam
    return modules


def _stages_problem(stages: str) -> str | None:
    try:
        parse_stages(stages)
    except ValueError as err:
        return str(err)
    return None


@dataclass
class LGAMKnobs(KnobSet):
    groups: int = knob(4, "G channel groups; must divide every chosen stage's channels", ge=1)
    reduction: int = knob(8, "r: hidden width C'/r (G=4, r=8 gives +0.025M on CIFAR ResNet-18)", ge=1)
    stages: str = knob("1,2,3,4", "ResNet stages followed by an LGAM (paper: every stage)", rule=_stages_problem)
    spatial_pool: str = knob("sum", "channel pooling of the spatial map; 'mean' avoids a saturated map",
                             choices=SPATIAL_POOLS)


@register_method
class LGAMMethod(FGVCMethod):
    name = "lgam"
    Knobs = LGAMKnobs
    hp: LGAMKnobs
    default_backbone = "resnet50"
    test_backbone = "test_resnet"  # LGAM needs ResNet stages

    def __init__(self, num_classes: int, **cfg: Any) -> None:
        super().__init__(num_classes, **cfg)
        hp = self.hp
        self.backbone = self.new_backbone()
        self.lgams = attach_lgam(self.backbone, parse_stages(hp.stages), hp.groups, hp.reduction, hp.spatial_pool)
        self.head = self.new_classifier(self.backbone.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(images)))

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        return StepOutput(loss=loss, branch_losses={"ce": loss.detach()}, logits=logits.detach())

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)
