"""``atcnn``: bilinear "linear fusion" head + channel-selected attention branch.

AT-CNN (bilinear "linear fusion" network with an attention branch), as this
project implements it:

* Main branch: X = backbone.forward_features(I) ([B, C, H, W]); a
  :class:`~fgmodels.layers.bilinear.BilinearHead` (fusion kernels Conv1 -> n
  channels, Conv2 -> m channels, G = f f'^T / (H W), signed sqrt with ``eps``,
  L2, fc). The paper writes 1/(mn) for the scale of G; this project uses 1/(HW)
  (an average over positions, so the scale does not depend on the input size).
* Attention mask (eq. 6-9), built from the detached X of the main branch:
  q_i = mean of channel i (eq. 7), w_i = q_i / sum_j sqrt(q_j) (eq. 8; q_j is
  clamped at 0 inside the sqrt so backbones whose last map is not post-ReLU do
  not give NaN), the top-``top_m`` channels by w_i, PER IMAGE. Eq. 9 literally
  sums the scalar weights, which carries no spatial information; we read it as
  the sum of the selected channel MAPS (``mask_weighting="plain"``, the project's
  reading) or, as an option, the w-weighted sum (``"weighted"``). The sum is clamped at
  0, upsampled (bilinear) to the image size and divided by its own maximum per
  image, so every image's mask lies in [0, 1] with max 1 (never a batch-global
  max). An all-zero sum (possible with an untrained backbone) gives an all-ones
  mask: the attention branch then sees the whole image instead of a black one.
* Attention branch: I_att = I * mask (on the normalised image tensor, so masked
  pixels go to the dataset-mean colour), the same backbone and the same fusion
  head. Loss = CE(main) + CE(att) (eq. 12).
* Test rule: the paper does not state one; Fig. 1 feeds both branches into the
  softmax, Algorithm 1 computes the mask from the image alone (no label needed)
  and Table 3 credits the attention network with +1.4 points, so both branches
  run at test: ``test_logits="sum"`` = logits_main + logits_att (default);
  ``"main"`` or ``"att"`` select one branch (ablations). With
  ``use_attention=False`` (main branch only) the test rule is always ``"main"``.
* The paper's Adam-then-SGD schedule ("Adam until the accuracy stops
  improving, then SGD from the saved weights") belongs to the shared training
  loop, not to this module: config keys ``opt``, ``opt_after_switch``,
  ``lr_after_switch`` and the switch rule ``switch: plateau`` (with
  ``switch_patience``; the paper's reading) or ``switch: epoch`` (at
  ``switch_epoch``); see :mod:`fgmodels.optim`.

Note: in train mode the backbone's BatchNorm couples the images of a batch, so
X (and hence a mask) depends on the batch; the mask computation itself is
strictly per image (tested in eval mode).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fgmodels.knobs import ConfigError, KnobSet, knob
from fgmodels.layers.bilinear import FUSIONS, BilinearHead
from fgmodels.layers.display import to_unit_range
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method

MASK_WEIGHTINGS = ("plain", "weighted")


@dataclass
class ATCNNKnobs(KnobSet):
    fusion: str = knob("1x1_1x3_3x1", "fusion kernel pair (the paper's best, Table 2)", choices=FUSIONS)
    n: int = knob(256, "Conv1 channels of the bilinear head", gt=0)
    m: int = knob(256, "Conv2 channels of the bilinear head", gt=0)
    top_m: int = knob(16, "channels summed into the attention mask (at most the backbone's channels)", ge=1)
    eps: float = knob(1e-6, "signed-sqrt eps (1e-8..1e-5; tiny values blow up the gradient at 0)", gt=0)
    use_attention: bool = knob(True, "attention branch on (ablation: False = main branch only)")
    test_logits: str = knob("sum", "test rule: main + att, main only or att only", choices=("sum", "main", "att"))
    mask_weighting: str = knob("plain", "mask = plain sum of the top maps, or w_i-weighted", choices=MASK_WEIGHTINGS)


def channel_weights(features: torch.Tensor) -> torch.Tensor:
    """Eq. 7-8: w_i = q_i / sum_j sqrt(max(q_j, 0)), q_i the mean of channel i; [B, C]."""
    q = features.float().mean(dim=(2, 3))
    return q / (q.clamp_min(0).sqrt().sum(dim=1, keepdim=True) + 1e-12)


def attention_mask(
    features: torch.Tensor,
    top_m: int,
    out_size: tuple[int, int] | None = None,
    weighting: str = "plain",
) -> torch.Tensor:
    """Detached per-image mask [B, 1, H', W'] in [0, 1] with max 1 per image.

    ``features`` is the backbone's last map [B, C, H, W]; ``out_size`` the image
    size to upsample to (None keeps H x W).
    """
    if features.ndim != 4:
        raise ValueError(f"attention_mask needs a [B, C, H, W] feature map, got shape {tuple(features.shape)}")
    channels = features.shape[1]
    if not 1 <= top_m <= channels:
        raise ValueError(
            f"top_m={top_m} must lie in [1, {channels}] (the backbone's feature channels); "
            f"lower top_m or pick a wider backbone"
        )
    if weighting not in MASK_WEIGHTINGS:
        raise ValueError(f"unknown mask weighting {weighting!r}; choose one of {list(MASK_WEIGHTINGS)}")
    with torch.no_grad():
        x = features.detach().float()
        w = channel_weights(x)
        top_w, idx = w.topk(int(top_m), dim=1)  # per image
        h, wd = x.shape[2:]
        maps = torch.gather(x, 1, idx[:, :, None, None].expand(-1, -1, h, wd))
        if weighting == "weighted":
            maps = maps * top_w[:, :, None, None]
        mask = maps.sum(dim=1, keepdim=True).clamp_min(0)
        if out_size is not None and tuple(out_size) != (h, wd):
            mask = F.interpolate(mask, size=tuple(out_size), mode="bilinear", align_corners=False)
            mask = mask.clamp_min(0)
        peak = mask.amax(dim=(2, 3), keepdim=True)
        tiny = torch.finfo(mask.dtype).tiny
        mask = torch.where(peak > tiny, mask / peak.clamp_min(tiny), torch.ones_like(mask))
    return mask


@register_method
class ATCNN(FGVCMethod):
    """Main bilinear branch + masked-image attention branch on one shared backbone."""

    name = "atcnn"
    Knobs = ATCNNKnobs
    hp: ATCNNKnobs
    backbone_passes = 2
    default_backbone = "inception_v3"  # the paper's best backbone (CUB 87.8)

    def __init__(self, num_classes: int, **cfg: Any) -> None:
        super().__init__(num_classes, **cfg)
        hp = self.hp
        if not hp.use_attention:
            hp.test_logits = "main"  # no attention branch to add at test
            self.backbone_passes = 1
        self.backbone = self.new_backbone()
        channels = int(self.backbone.num_features)
        if hp.top_m > channels:
            raise ConfigError(
                f"atcnn knob 'top_m' must lie in [1, {channels}] for backbone {self.backbone_name!r} "
                f"({channels} feature channels), got {hp.top_m}. Fix: lower top_m.",
                key="top_m",
            )
        self.head = BilinearHead(channels, num_classes, hp.n, hp.m, hp.fusion, hp.eps, dropout=self.dropout)

    # -- pieces -----------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map X, [B, C, H, W]."""
        x = self.backbone.forward_features(images)
        if x.ndim != 4 or x.shape[1] != self.backbone.num_features:
            raise ValueError(
                f"atcnn needs a CNN backbone whose forward_features returns [B, C, H, W]; "
                f"got shape {tuple(x.shape)}; choose a convolutional timm model"
            )
        return x

    def branch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, X) of one backbone + fusion-head pass."""
        x = self.features(images)
        return self.head(x), x

    def attention_images(self, images: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(I * mask, mask); the mask is detached and per image."""
        mask = attention_mask(x, self.hp.top_m, tuple(images.shape[2:]), self.hp.mask_weighting)
        return images * mask.to(images.dtype), mask

    # -- interface --------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict(images)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        logits_main, x = self.branch(images)
        loss_main = F.cross_entropy(logits_main, labels)
        losses = {"main": loss_main.detach()}
        loss = loss_main
        if self.hp.use_attention:
            att_images, _ = self.attention_images(images, x)
            logits_att, _ = self.branch(att_images)
            loss_att = F.cross_entropy(logits_att, labels)
            losses["att"] = loss_att.detach()
            loss = loss + loss_att
        return StepOutput(loss=loss, branch_losses=losses, logits=logits_main.detach())

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        logits_main, x = self.branch(images)
        if self.hp.test_logits == "main":
            return logits_main
        logits_att, _ = self.branch(self.attention_images(images, x)[0])
        return logits_att if self.hp.test_logits == "att" else logits_main + logits_att

    def visualize(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The mask and the masked image (min-max rescaled per image for display)."""
        with torch.no_grad():
            att, mask = self.attention_images(images, self.features(images))
        return {"att_mask": mask.expand(-1, 3, -1, -1).float(), "att_image": to_unit_range(att.float())}
