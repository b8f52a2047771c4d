"""``gholm``: GHOLM-Net (Zheng & Wang, Computer Science 2023) — ConvNeXt + Grad-CAM
crop / drop branches + supervised contrastive loss.

Three branches share ONE timm backbone and ONE linear classifier (the paper:
"共享一个主干网络进行特征提取和分类"):

* raw: image -> A = ``forward_features`` -> pooled = ``forward_head(pre_logits=True)``
  -> logits_raw. Grad-CAM for the target class (the label in training, the argmax
  at test) is taken from this same forward pass with ``torch.autograd.grad`` on A,
  which only back-propagates through the head and never writes parameter ``.grad``.
* crop: heat = upsampled cam; mask = heat > mu * mean(heat); the largest
  8-connected region's bounding box is cropped and resized to the input size
  (whole image when the mask is empty, as happens early in training).
* drop: theta ~ U[theta_low, theta_high] per image; pixels with
  heat > theta * mean(heat) are set to zero (the images are already normalised,
  so zero is the dataset mean colour).

Loss = CE_raw + CE_crop + gamma * CE_drop + lambda_con * SupCon([z_raw, z_crop]; tau).
Test logits = raw + crop (``test_logits``: ``raw+crop`` | ``raw`` | ``crop``).

Choices where the paper is vague (project decisions):

* z = L2-normalised pooled backbone features (the classifier's input), without a
  projection head: the paper applies the contrastive loss to the network's 1-D
  features directly and mentions no extra head.
* SupCon follows Khosla et al. (denominator over all other embeddings, mean over
  anchors) with base temperature = tau, i.e. no tau/0.07 rescaling. The paper's
  eq. 11 text (denominator over negatives only, sum over anchors) reads as a
  transcription of Khosla's loss, so Khosla's definition is used.
* lambda_con = 1.0: the paper's total loss (eq. 12) is L_ce + L_c.
* Connected regions use 8-connectivity (as skimage's default label(), used by the
  MMAL crop the paper builds on), computed on the image-size heat map.
* Switching ``use_crop`` off also switches off SupCon (it contrasts raw against
  crop) and makes the test logits raw-only; both are warned about at build time.
* The crop / drop images are built from the detached heat under ``no_grad``; the
  branches' CE and SupCon gradients flow into the backbone through their own
  forward passes only.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgmodels import attention_ops as ops
from fgmodels.backbones import create_backbone
from fgmodels.losses import supcon_loss
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method

TEST_LOGIT_MODES = ("raw+crop", "raw", "crop")


@register_method
class Gholm(FGVCMethod):
    name = "gholm"
    default_backbone = "convnext_small"
    backbone_passes = 3
    hparams: dict[str, Any] = {
        "mu": 1.7,
        "theta_low": 1.0,
        "theta_high": 2.0,
        "gamma": 0.2,
        "tau": 0.7,
        "lambda_con": 1.0,
        "use_crop": True,
        "use_drop": True,
        "use_supcon": True,
        "test_logits": "raw+crop",
    }
    connectivity: int = 8
    # The engine may run predict under no_grad: the cam re-enables grad for the
    # cheap head only, so the backbone forward keeps no graph at evaluation.

    def __init__(
        self,
        num_classes: int,
        backbone: str = "convnext_small",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        drop_rate: float = 0.0,
        mu: float = 1.7,
        theta_low: float = 1.0,
        theta_high: float = 2.0,
        gamma: float = 0.2,
        tau: float = 0.7,
        lambda_con: float = 1.0,
        use_crop: bool = True,
        use_drop: bool = True,
        use_supcon: bool = True,
        test_logits: str = "raw+crop",
    ) -> None:
        super().__init__()
        _check_hparams(num_classes, mu, theta_low, theta_high, gamma, tau, lambda_con, test_logits)
        self.backbone = create_backbone(backbone, pretrained, checkpoint_path)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)
        self.num_classes = num_classes
        self.mu = float(mu)
        self.theta_low = float(theta_low)
        self.theta_high = float(theta_high)
        self.gamma = float(gamma)
        self.tau = float(tau)
        self.lambda_con = float(lambda_con)
        self.use_crop = bool(use_crop)
        self.use_drop = bool(use_drop)
        self.use_supcon = bool(use_supcon) and self.use_crop
        self.test_logits = test_logits if self.use_crop else "raw"
        if use_supcon and not use_crop:
            warnings.warn("gholm: use_supcon needs the crop view; with use_crop=False SupCon is off", stacklevel=2)
        if test_logits != "raw" and not use_crop:
            warnings.warn(
                f"gholm: test_logits={test_logits!r} needs the crop branch; with use_crop=False "
                "the raw logits are used",
                stacklevel=2,
            )

    # ------------------------------------------------------------------ forward pieces
    def _head(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (SupCon's z before normalisation) and logits from a feature map."""
        pooled = self.backbone.forward_head(feats, pre_logits=True)
        return pooled, self.fc(self.dropout(pooled))

    def _branch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._head(self.backbone.forward_features(images))

    def _raw_with_cam(
        self, images: torch.Tensor, target: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw branch plus Grad-CAM [B, h, w] from the same backbone forward.

        With autograd on (training), A stays in the graph and the cam gradient
        is taken with ``retain_graph=True``. Under ``no_grad`` / ``inference_mode``
        (evaluation), the backbone runs without a graph and only the cheap head
        is re-entered with grad enabled on a detached copy of A.
        """
        feats = self.backbone.forward_features(images)
        outer_grad = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        in_graph = outer_grad and feats.requires_grad
        with torch.inference_mode(False), torch.enable_grad():
            head_in = feats if in_graph else feats.detach().clone().requires_grad_(True)
            pooled, logits = self._head(head_in)
            tgt = logits.detach().argmax(dim=1) if target is None else target
            cam = ops.grad_cam(head_in, logits, tgt)
        if not outer_grad:
            pooled, logits = pooled.detach(), logits.detach()
        return pooled, logits, cam

    def _check_inputs(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        if images.dim() != 4:
            raise ValueError(f"gholm expects images [B, C, H, W], got shape {tuple(images.shape)}")
        if labels is not None and labels.shape != images.shape[:1]:
            raise ValueError(
                f"gholm expects one label per image: labels {tuple(labels.shape)} vs images {tuple(images.shape)}"
            )

    # ------------------------------------------------------------------ public API
    def localize(self, images: torch.Tensor, target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(heat [B, H, W], crop boxes [B, 4] x0, y0, x1, y1 pixels) for ``target``
        (argmax class when None), detached; for localisation evaluation."""
        self._check_inputs(images, target)
        with torch.no_grad():
            _, _, cam = self._raw_with_cam(images, target)
            heat = ops.upsample_heat(cam, tuple(images.shape[-2:]))
            boxes = ops.crop_boxes_from_heat(heat, self.mu, self.connectivity)
        return heat, boxes

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        self._check_inputs(images, labels)
        size = tuple(images.shape[-2:])
        need_cam = self.use_crop or self.use_drop
        if need_cam:
            pooled_raw, logits_raw, cam = self._raw_with_cam(images, labels)
        else:
            pooled_raw, logits_raw = self._branch(images)
        ce_raw = F.cross_entropy(logits_raw, labels)
        total = ce_raw
        branch: dict[str, torch.Tensor] = {"raw": ce_raw.detach()}
        extras: dict[str, Any] = {}
        if need_cam:
            with torch.no_grad():
                heat = ops.upsample_heat(cam, size)
                if self.use_crop:
                    boxes = ops.crop_boxes_from_heat(heat, self.mu, self.connectivity)
                    crop_images = ops.crop_and_resize(images, boxes)
                    extras["crop_boxes"] = boxes
                if self.use_drop:
                    drop_images = ops.apply_drop(images, ops.drop_mask(heat, self.theta_low, self.theta_high))
        if self.use_crop:
            pooled_crop, logits_crop = self._branch(crop_images)
            ce_crop = F.cross_entropy(logits_crop, labels)
            total = total + ce_crop
            branch["crop"] = ce_crop.detach()
        if self.use_drop:
            _, logits_drop = self._branch(drop_images)
            ce_drop = F.cross_entropy(logits_drop, labels)
            total = total + self.gamma * ce_drop
            branch["drop"] = ce_drop.detach()
        if self.use_supcon:
            z = torch.stack([pooled_raw, pooled_crop], dim=1)  # normalised inside supcon_loss
            con = supcon_loss(z, labels, temperature=self.tau)
            total = total + self.lambda_con * con
            branch["supcon"] = con.detach()
        return StepOutput(loss=total, branch_losses=branch, logits=logits_raw.detach(), extras=extras)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Paper's test rule: logits_raw + logits_crop (crop from the argmax-class cam)."""
        self._check_inputs(images)
        if self.test_logits == "raw":
            return self._branch(images)[1]
        _, logits_raw, cam = self._raw_with_cam(images, None)
        with torch.no_grad():
            heat = ops.upsample_heat(cam, tuple(images.shape[-2:]))
            boxes = ops.crop_boxes_from_heat(heat, self.mu, self.connectivity)
            crop_images = ops.crop_and_resize(images, boxes)
        logits_crop = self._branch(crop_images)[1]
        if self.test_logits == "crop":
            return logits_crop
        return logits_raw + logits_crop

    @torch.no_grad()
    def visualize(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dashboard images in [0, 1]: crop box on the input, heat overlay, dropped and cropped views."""
        self._check_inputs(images, labels)
        heat, boxes = self.localize(images, labels)
        base = ops.to_unit_range(images.float())
        dropped = ops.apply_drop(base, ops.drop_mask(heat, self.theta_low, self.theta_high))
        return {
            "crop_box": ops.draw_boxes(base, boxes),
            "heat": ops.heat_overlay(base, heat),
            "drop": dropped,
            "crop": ops.crop_and_resize(base, boxes).clamp(0.0, 1.0),
        }


def _check_hparams(
    num_classes: int, mu: float, theta_low: float, theta_high: float, gamma: float, tau: float,
    lambda_con: float, test_logits: str,
) -> None:
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"gholm needs num_classes >= 2, got {num_classes!r}")
    if mu <= 0:
        raise ValueError(f"gholm mu (crop threshold factor) must be positive, got {mu!r}")
    if not 0 <= theta_low <= theta_high:
        raise ValueError(
            f"gholm needs 0 <= theta_low <= theta_high (drop threshold range), got {theta_low!r}, {theta_high!r}"
        )
    if gamma < 0 or lambda_con < 0:
        raise ValueError(f"gholm loss weights must be >= 0, got gamma={gamma!r}, lambda_con={lambda_con!r}")
    if tau <= 0:
        raise ValueError(f"gholm tau (SupCon temperature) must be positive, got {tau!r}")
    if test_logits not in TEST_LOGIT_MODES:
        raise ValueError(f"gholm test_logits must be one of {TEST_LOGIT_MODES}, got {test_logits!r}")
