"""``clca``: cross-layer collaborative attention + channel group attention
(He, Qi, He, Guo 2024; the paper is an abstract only, so the design is ours).

Design chosen:

1. Backbone: timm ``features_only``; the last three feature levels are the three
   branches ("stages 3, 4, 5": out_indices (2, 3, 4) on a ResNet, strides 8/16/32).
2. Channel group attention (CGA) on the raw stage-5 features (C5 channels, G
   groups, G must divide C5), residual: ``X + X_c * mask`` where
   ``X_c = X * sigmoid(grouped-MLP(GAP(X)))`` (channel weights computed within each
   group only, grouped 1x1 convs) and ``mask`` [B, G, H, W] is an SGE-style map
   per group: the similarity of each position to the group's mean descriptor,
   standardised over positions, then ``sigmoid(a_g * t + b_g)``.
3. Projection: each branch -> 1x1 conv + BN + ReLU to ``proj_width`` D channels,
   then resized to a common grid, the stage-4 grid (stage 3 adaptive-average
   pooled, stage 5 bilinearly upsampled), so any input size works.
4. Co-attention: each branch i has a query and a key embedding (1x1 conv, D/4
   channels). For every other branch j, the cross-layer affinity between the
   positions of i and j is ``softmax_j(q_i^T k_j / sqrt(D/4))`` [N, N], and the
   attended features are ``Z_j`` gathered with it. The two attended maps are
   concatenated, fused by 1x1 conv + BN and added back: ``Z_i' = Z_i + fuse_i(.)``.
5. Heads: global average pooling (adaptive) -> dropout -> linear, one per branch,
   plus a fused head on the concatenation of the three pooled vectors.
6. Loss: ``w3 CE3 + w4 CE4 + w5 CE5 + w_fused CE_fused`` (paper: plain sum).
   Test: ``test_logits="sum"`` adds the four logits; ``"fused"`` uses the fused head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgmodels.knobs import Broken, ConfigError, KnobSet, knob
from fgmodels.layers.groups import check_groups
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method

BRANCHES = ("branch3", "branch4", "branch5")


@dataclass
class CLCAKnobs(KnobSet):
    groups: int = knob(8, "G of the channel group attention; must divide the stage-5 channels", ge=1)
    proj_width: int = knob(512, "common branch width D", ge=4)
    w_branch3: float = knob(1.0, "loss weight of the stage-3 head", ge=0)
    w_branch4: float = knob(1.0, "loss weight of the stage-4 head", ge=0)
    w_branch5: float = knob(1.0, "loss weight of the stage-5 head", ge=0)
    w_fused: float = knob(1.0, "loss weight of the fused head", ge=0)
    test_logits: str = knob("sum", "test rule: sum of all four heads, or the fused head", choices=("sum", "fused"))

    def loss_weights(self) -> dict[str, float]:
        return {"branch3": self.w_branch3, "branch4": self.w_branch4, "branch5": self.w_branch5,
                "fused": self.w_fused}

    def broken_rules(self) -> Iterable[Broken]:
        if not any(w > 0 for w in self.loss_weights().values()):
            yield Broken(("w_branch3", "w_branch4", "w_branch5", "w_fused"),
                         "branch loss weights must not all be 0 (nothing would be trained)",
                         "give at least one head a weight > 0")


class ChannelGroupAttention(nn.Module):
    """Channel attention within each of G channel groups, then a per-group spatial map."""

    def __init__(self, channels: int, groups: int, reduction: int = 4) -> None:
        super().__init__()
        check_groups(channels, groups, where="clca channel group attention (stage-5 channels)")
        self.groups = int(groups)
        hidden = self.groups * max(1, channels // (self.groups * reduction))
        self.fc1 = nn.Conv2d(channels, hidden, 1, groups=self.groups)
        self.fc2 = nn.Conv2d(hidden, channels, 1, groups=self.groups)
        self.sp_weight = nn.Parameter(torch.zeros(1, self.groups, 1, 1))
        self.sp_bias = nn.Parameter(torch.ones(1, self.groups, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        xc = x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        g = xc.view(b, self.groups, c // self.groups, h, w)
        t = (g * g.mean((3, 4), keepdim=True)).sum(2)  # [B, G, H, W]
        # var + eps inside the sqrt: a 1x1 stage-5 map (tiny inputs) has zero variance
        t = (t - t.mean((2, 3), keepdim=True)) / (t.var((2, 3), keepdim=True, unbiased=False) + 1e-5).sqrt()
        mask = torch.sigmoid(t * self.sp_weight + self.sp_bias)
        return x + (g * mask.unsqueeze(2)).view(b, c, h, w)


def cross_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [B, d, N], k [B, d, N], v [B, D, N] -> [B, D, N]: for each query position,
    the softmax(q.k / sqrt d)-weighted sum of v over the other layer's positions."""
    affinity = torch.softmax(torch.einsum("bdn,bdm->bnm", q, k) / math.sqrt(q.shape[1]), dim=-1)
    return torch.einsum("bnm,bcm->bcn", affinity, v)


class CrossLayerCoAttention(nn.Module):
    """Every branch attends to the other two on a common grid; results fused back."""

    def __init__(self, width: int, n_branches: int = 3) -> None:
        super().__init__()
        key_width = max(1, width // 4)
        self.query = nn.ModuleList(nn.Conv2d(width, key_width, 1) for _ in range(n_branches))
        self.key = nn.ModuleList(nn.Conv2d(width, key_width, 1) for _ in range(n_branches))
        self.fuse = nn.ModuleList(
            nn.Sequential(nn.Conv2d((n_branches - 1) * width, width, 1, bias=False), nn.BatchNorm2d(width))
            for _ in range(n_branches)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        b, c, h, w = feats[0].shape
        qs = [m(f).flatten(2) for m, f in zip(self.query, feats)]
        ks = [m(f).flatten(2) for m, f in zip(self.key, feats)]
        vs = [f.flatten(2) for f in feats]
        out = []
        for i, f in enumerate(feats):
            attended = [cross_attend(qs[i], ks[j], vs[j]) for j in range(len(feats)) if j != i]
            out.append(f + self.fuse[i](torch.cat(attended, 1).view(b, -1, h, w)))
        return out


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool down, bilinear up: works for any input resolution."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@register_method
class CLCA(FGVCMethod):
    name = "clca"
    Knobs = CLCAKnobs
    hp: CLCAKnobs
    default_backbone = "resnet50"
    test_backbone = "test_resnet"  # needs >= 3 feature levels whose last channels G divides

    def __init__(self, num_classes: int, **cfg: Any) -> None:
        super().__init__(num_classes, **cfg)
        hp = self.hp
        self.backbone = self.new_backbone(features_only=True)
        chans = self.backbone.feature_info.channels()
        if len(chans) < 3:
            raise ConfigError(
                f"clca needs a backbone with >= 3 feature levels; {self.backbone_name} has {len(chans)}. "
                f"Fix: use a CNN backbone such as resnet50.",
                key="backbone",
            )
        chans = chans[-3:]  # ResNet: out_indices (2, 3, 4), i.e. stages 3, 4, 5
        width = hp.proj_width
        self.cga = ChannelGroupAttention(chans[2], hp.groups)
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for ch in chans
        )
        self.coatt = CrossLayerCoAttention(width)
        self.heads = nn.ModuleDict({name: self.new_classifier(width) for name in BRANCHES})
        self.heads["fused"] = self.new_classifier(3 * width)

    def branch_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Projected branch maps on the common (stage-4) grid, before co-attention."""
        f3, f4, f5 = self.backbone(images)[-3:]
        f5 = self.cga(f5)
        grid = tuple(f4.shape[-2:])
        return [resize_to(p(f), grid) for p, f in zip(self.proj, (f3, f4, f5))]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.coatt(self.branch_features(images))
        pooled = [self.dropout(F.adaptive_avg_pool2d(f, 1).flatten(1)) for f in feats]
        logits = {name: self.heads[name](p) for name, p in zip(BRANCHES, pooled)}
        logits["fused"] = self.heads["fused"](torch.cat(pooled, 1))
        return logits

    def combine(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.hp.test_logits == "fused":
            return logits["fused"]
        return logits["branch3"] + logits["branch4"] + logits["branch5"] + logits["fused"]

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        logits = self(images)
        losses = {name: F.cross_entropy(out, labels) for name, out in logits.items()}
        weights = self.hp.loss_weights()
        loss = sum(weights[name] * losses[name] for name in losses)
        return StepOutput(
            loss=loss,
            branch_losses={name: v.detach() for name, v in losses.items()},
            logits=self.combine(logits).detach(),
        )

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.combine(self(images))
