"""``gholm``: GHOLM-Net (Zheng & Wang, Computer Science 2023) — ConvNeXt + Grad-CAM
crop / drop branches + supervised contrastive loss.

Three branches share ONE timm backbone and ONE linear classifier (the paper:
"共享一个主干网络进行特征提取和分类"):

* raw: image -> A = ``forward_features`` -> pooled = ``forward_head(pre_logits=True)``
  -> logits_raw. Grad-CAM for the target class is taken from this same forward
  pass with ``torch.autograd.grad`` on A, which only back-propagates through the
  head and never writes parameter ``.grad``. Target: the predicted (argmax) class
  at test; in training ``cam_class`` chooses: ``pred`` (the paper: sec. 2.2
  back-propagates "the predicted class c" and sec. 3.1 builds the crop "from the
  raw branch's final classification output") or ``label`` (a variant).
* crop: heat = upsampled cam; mask = heat > mu * mean(heat); the largest
  8-connected region's bounding box is cropped and resized to the input size
  (whole image when the mask is empty, as happens early in training).
* drop: theta ~ U[theta_low, theta_high] per image; pixels with
  heat > theta * mean(heat) are set to zero (the images are already normalised,
  so zero is the dataset mean colour).

Loss = CE_raw + CE_crop + gamma * CE_drop + lambda_con * SupCon([z_raw, z_crop]; tau).
Test logits = raw + crop (``test_logits``: ``raw+crop`` | ``raw`` | ``crop``).

Choices where the paper is vague (project decisions):

* z (``supcon_features``): ``logits``, the paper's reading (sec. 3.4: the 1-D
  features "after the backbone's fully-connected layer", i.e. the shared
  classifier's output), or ``pooled``, the pooled backbone features before it (a
  variant); L2-normalised inside the loss, without a projection head (the paper
  mentions none).
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
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from fgmodels.knobs import Broken, KnobSet, knob
from fgmodels.layers import display
from fgmodels.layers import heatmap as ops
from fgmodels.layers.supcon import supcon_loss
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method


@dataclass
class GholmKnobs(KnobSet):
    mu: float = knob(1.7, "crop threshold factor: crop the largest region with heat > mu * mean(heat)", gt=0)
    theta_low: float = knob(1.0, "drop threshold factor theta ~ U[theta_low, theta_high]: lower end", ge=0)
    theta_high: float = knob(2.0, "drop threshold factor: upper end", ge=0)
    gamma: float = knob(0.2, "weight of the drop branch's cross-entropy", ge=0)
    tau: float = knob(0.7, "SupCon temperature", gt=0)
    lambda_con: float = knob(1.0, "weight of the SupCon loss", ge=0)
    use_crop: bool = knob(True, "crop branch on (off also turns SupCon off and makes test logits raw)")
    use_drop: bool = knob(True, "drop branch on")
    use_supcon: bool = knob(True, "supervised contrastive loss between raw and crop features")
    test_logits: str = knob("raw+crop", "test rule: logits of raw + crop, raw only or crop only",
                            choices=("raw+crop", "raw", "crop"))
    supcon_features: str = knob("logits", "SupCon's z: the classifier's output (paper) or the pooled features",
                                choices=("logits", "pooled"))
    cam_class: str = knob("pred", "training Grad-CAM target: the predicted class (paper) or the label",
                          choices=("pred", "label"))

    def broken_rules(self) -> Iterable[Broken]:
        if not self.theta_low <= self.theta_high:
            yield Broken(("theta_low", "theta_high"),
                         f"the drop threshold range needs theta_low <= theta_high, got {self.theta_low!r} > "
                         f"{self.theta_high!r}", "swap the two values or raise theta_high")


@register_method
class Gholm(FGVCMethod):
    name = "gholm"
    Knobs = GholmKnobs
    hp: GholmKnobs
    default_backbone = "convnext_small"
    backbone_passes = 3
    # data-dependent crop boxes and labelling rounds, grad-mode switches inside a step:
    # `compile: auto` stays off (fgmodels.auto); benchmarks/bench_compile.py counts the recompiles
    dynamic_shapes = True
    connectivity: int = 8

    def __init__(self, num_classes: int, **cfg: Any) -> None:
        super().__init__(num_classes, **cfg)
        hp = self.hp
        if hp.use_supcon and not hp.use_crop:
            warnings.warn("gholm: use_supcon needs the crop view; with use_crop=False SupCon is off", stacklevel=2)
            hp.use_supcon = False
        if hp.test_logits != "raw" and not hp.use_crop:
            warnings.warn(
                f"gholm: test_logits={hp.test_logits!r} needs the crop branch; with use_crop=False "
                "the raw logits are used",
                stacklevel=2,
            )
            hp.test_logits = "raw"
        self.backbone = self.new_backbone()
        self.fc = self.new_classifier(self.backbone.num_features)

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
            boxes = ops.crop_boxes_from_heat(heat, self.hp.mu, self.connectivity)
        return heat, boxes

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        self._check_inputs(images, labels)
        size = tuple(images.shape[-2:])
        need_cam = self.hp.use_crop or self.hp.use_drop
        if need_cam:
            target = labels if self.hp.cam_class == "label" else None  # None: the argmax class
            pooled_raw, logits_raw, cam = self._raw_with_cam(images, target)
        else:
            pooled_raw, logits_raw = self._branch(images)
        ce_raw = F.cross_entropy(logits_raw, labels)
        total = ce_raw
        branch: dict[str, torch.Tensor] = {"raw": ce_raw.detach()}
        extras: dict[str, Any] = {}
        if need_cam:
            with torch.no_grad():
                heat = ops.upsample_heat(cam, size)
                if self.hp.use_crop:
                    boxes = ops.crop_boxes_from_heat(heat, self.hp.mu, self.connectivity)
                    crop_images = ops.crop_and_resize(images, boxes)
                    extras["crop_boxes"] = boxes
                if self.hp.use_drop:
                    drop_images = ops.apply_drop(images, ops.drop_mask(heat, self.hp.theta_low, self.hp.theta_high))
        if self.hp.use_crop:
            pooled_crop, logits_crop = self._branch(crop_images)
            ce_crop = F.cross_entropy(logits_crop, labels)
            total = total + ce_crop
            branch["crop"] = ce_crop.detach()
        if self.hp.use_drop:
            _, logits_drop = self._branch(drop_images)
            ce_drop = F.cross_entropy(logits_drop, labels)
            total = total + self.hp.gamma * ce_drop
            branch["drop"] = ce_drop.detach()
        if self.hp.use_supcon:
            if self.hp.supcon_features == "logits":
                z = torch.stack([logits_raw, logits_crop], dim=1)
            else:
                z = torch.stack([pooled_raw, pooled_crop], dim=1)  # normalised inside supcon_loss
            con = supcon_loss(z, labels, temperature=self.hp.tau)
            total = total + self.hp.lambda_con * con
            branch["supcon"] = con.detach()
        return StepOutput(loss=total, branch_losses=branch, logits=logits_raw.detach(), extras=extras)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Paper's test rule: logits_raw + logits_crop (crop from the argmax-class cam)."""
        self._check_inputs(images)
        if self.hp.test_logits == "raw":
            return self._branch(images)[1]
        _, logits_raw, cam = self._raw_with_cam(images, None)
        with torch.no_grad():
            heat = ops.upsample_heat(cam, tuple(images.shape[-2:]))
            boxes = ops.crop_boxes_from_heat(heat, self.hp.mu, self.connectivity)
            crop_images = ops.crop_and_resize(images, boxes)
        logits_crop = self._branch(crop_images)[1]
        if self.hp.test_logits == "crop":
            return logits_crop
        return logits_raw + logits_crop

    @torch.no_grad()
    def visualize(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dashboard images in [0, 1]: crop box on the input, heat overlay, dropped and cropped views
        (the cam of the class training uses, ``cam_class``)."""
        self._check_inputs(images, labels)
        heat, boxes = self.localize(images, labels if self.hp.cam_class == "label" else None)
        base = display.to_unit_range(images.float())
        dropped = ops.apply_drop(base, ops.drop_mask(heat, self.hp.theta_low, self.hp.theta_high))
        return {
            "crop_box": display.draw_boxes(base, boxes),
            "heat": display.heat_overlay(base, heat),
            "drop": dropped,
            "crop": ops.crop_and_resize(base, boxes).clamp(0.0, 1.0),
        }

