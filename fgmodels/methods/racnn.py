"""``racnn``: Recurrent Attention CNN (Fu et al., CVPR 2017), 2-3 scales.

Scale s: backbone_s -> logits_s. Between scales an attention proposal network
(APN: two FC layers on the last feature map) predicts a square box
``(tx, ty, tl)`` (tl = HALF side) which is cropped from the ORIGINAL image and
zoomed to the input size for scale s+1 (boxes of later scales are composed with
the earlier ones, so the image is resampled once, not once per scale).

Project decisions (the paper is vague on these):

* Box units: fractions of the image (see :mod:`fgmodels.layers.zoom`). Each APN box
  lives in the coordinates of the image it looks at; its half side lies in
  ``[min_tl_frac, 1] x`` the previous scale's half side (scale 1's "previous"
  is the whole image) and it never leaves that image. (A clamp
  ``tl >= side / 3``, as some public implementations use, is ``min_tl_frac = 2/3``.)
* Crop: ``affine_grid``/``grid_sample`` (exact gradients). ``crop_mode="boxcar"``
  multiplies by the paper's logistic box mask (sharpness ``boxcar_k`` per pixel)
  before the same zoom; its gradient is exact too (mask and grid), not the
  paper's mask-only surrogate.
* Loss: sum_s CE(logits_s) + sum_s max(0, p_s(c) - p_{s+1}(c) + margin) with p
  the SOFTMAX probability of the true class c.
* Phases, a pure function of the epoch (set by ``on_epoch_start``), so they are
  exact under gradient accumulation and checkpoint resume:
  - epochs ``[0, apn_pretrain_epochs)``: "pretrain": the APNs regress (tx, ty)
    onto the peak of the channel-mean last feature map with a box of half the
    image side (tl = 1/4 of the side: the paper's "region half the image"),
    while the backbones and classifiers train on CE (the APN boxes are detached,
    so the two losses touch disjoint parameters);
  - then blocks of ``alternation_period`` EPOCHS alternate, starting with
    "cls" (CE; APN fixed: boxes detached, APN grads stay None) and then "apn"
    (ranking loss; backbones and classifiers fixed: their parameters are
    excluded from autograd during the forward, so their grads stay None and an
    optimiser skips them even with momentum and weight decay). BatchNorm
    running statistics of the fixed backbones still update in "apn" epochs.
* APN lr: :meth:`param_groups` tags the APN groups with ``lr_scale =
  apn_lr_mult``, which timm's schedulers (the shared loop's multistep/cosine)
  apply to the group's lr from their construction on; pass ``lr`` to get an
  absolute ``"lr"`` key instead. With ``sched: constant`` the shared loop runs
  no scheduler, so there ``lr_scale`` is not applied (APN lr = base lr).
* Test logits (``test_logits``): ``fused`` (the original RA-CNN: each scale's
  pooled descriptor is L2-normalised, the descriptors are concatenated and a
  trained linear layer, the fusion classifier, classifies them; its CE is added
  to the loss in the CE phases ("pretrain", "cls") and its gradient reaches the
  backbones like the scales' own CE; in "apn" epochs it is fixed like the heads),
  ``sum`` (sum of the scales' logits) or one scale (``scale2``). Only ``fused``
  builds the fusion classifier.
* APN input: the last feature map, adaptive-average-pooled to ``apn_grid`` x
  ``apn_grid`` (7; any input size works), flattened, FC(``apn_hidden`` = 512)
  -> tanh -> FC(3); these two are constructor arguments (tests shrink them),
  not config knobs.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgmodels.knobs import Broken, KnobSet, knob
from fgmodels.layers.display import to_unit_range
from fgmodels.layers.zoom import FULL_IMAGE, boxcar_crop_and_zoom, compose_boxes, constrain_box, crop_and_zoom
from fgmodels.methods.base import FGVCMethod, StepOutput
from fgmodels.registry import register_method

PRETRAIN_TL = 0.25  # half side of the pretraining box: a box half the image's side
PHASES = ("pretrain", "cls", "apn")


@dataclass
class RACNNKnobs(KnobSet):
    scales: int = knob(3, "number of scales (paper: 3)", ge=2, hint="for one scale use method 'baseline'")
    margin: float = knob(0.05, "ranking-loss margin on the true-class probability (paper: 0.05)", ge=0)
    crop_mode: str = knob("affine", "affine zoom, or the paper's soft boxcar mask before it", choices=("affine", "boxcar"))
    boxcar_k: float = knob(10.0, "sharpness of the boxcar mask per pixel (paper: 10)", gt=0)
    min_tl_frac: float = knob(1.0 / 3.0, "smallest half side as a fraction of the previous scale's (paper: 1/3)",
                              gt=0, lt=1)
    apn_lr_mult: float = knob(1.0, "lr multiplier of the attention proposal networks", gt=0)
    alternation_period: int = knob(1, "epochs per cls / apn block of the alternation", ge=1)
    apn_pretrain_epochs: int = knob(1, "epochs of APN pretraining on the feature peak", ge=0)
    share_backbone: bool = knob(False, "one backbone for every scale instead of one per scale")
    test_logits: str = knob("fused", "test rule: trained fusion of the L2-normalised scale features (paper), "
                            "sum over scales, or one scale ('scale2')")

    def broken_rules(self) -> Iterable[Broken]:
        valid = ["fused", "sum"] + [f"scale{i + 1}" for i in range(self.scales)]
        if self.test_logits not in valid:
            yield Broken(("test_logits", "scales"), f"with scales={self.scales} test_logits must be one of {valid}, "
                         f"got {self.test_logits!r}", f"use one of {valid} or change scales")


def ranking_loss(
    logits_coarse: torch.Tensor, logits_fine: torch.Tensor, labels: torch.Tensor, margin: float
) -> torch.Tensor:
    """Batch mean of max(0, p_coarse(c) - p_fine(c) + margin), p = softmax prob of the label."""
    def prob(logits: torch.Tensor) -> torch.Tensor:  # at least float32 (bf16 under autocast)
        full = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return full.softmax(dim=1).gather(1, labels[:, None]).squeeze(1)

    return F.relu(prob(logits_coarse) - prob(logits_fine) + margin).mean()


def peak_box_targets(feat: torch.Tensor, tl: float) -> torch.Tensor:
    """Pretraining targets [B, 3]: box of half side ``tl`` centred on the channel-mean peak.

    The centre is the feature cell's centre in unit-square coordinates, moved
    inward where needed so the target box stays inside the image.
    """
    heat = feat.detach().float().mean(dim=1)  # [B, h, w]
    b, h, w = heat.shape
    idx = heat.flatten(1).argmax(dim=1)
    cy = ((idx // w).float() + 0.5) / h
    cx = ((idx % w).float() + 0.5) / w
    target = torch.stack([cx, cy, torch.full_like(cx, tl)], dim=1)
    target[:, :2] = target[:, :2].clamp(tl, 1.0 - tl)
    return target


class APN(nn.Module):
    """Attention proposal network: pooled feature map -> FC -> tanh -> FC -> 3 pre-activations."""

    def __init__(self, channels: int, grid: int, hidden: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc1 = nn.Linear(channels * grid * grid, hidden)
        self.fc2 = nn.Linear(hidden, 3)
        # Small last layer: training starts from centred boxes, not random ones.
        nn.init.normal_(self.fc2.weight, std=0.01)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(self.pool(feat).flatten(1))))


@contextmanager
def _params_excluded_from_autograd(modules: list[nn.Module]) -> Iterator[None]:
    """Forward through ``modules`` with gradient flowing to their INPUTS but not their params."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass
class ScalePass:
    """One forward through every scale."""

    logits: list[torch.Tensor]  # per scale [B, K]
    pooled: list[torch.Tensor]  # per scale: the pooled descriptor the head classifies [B, D]
    feats: list[torch.Tensor]  # last feature map per scale
    boxes: list[torch.Tensor]  # per APN: box in its own input's coordinates [B, 3]
    abs_boxes: list[torch.Tensor]  # per APN: box in original-image coordinates [B, 3]
    inputs: list[torch.Tensor]  # the image each scale saw


@register_method
class RACNN(FGVCMethod):
    name = "racnn"
    Knobs = RACNNKnobs
    hp: RACNNKnobs
    backbone_passes = 3  # per instance: the number of scales
    default_backbone = "resnet50"

    def __init__(self, num_classes: int, apn_grid: int = 7, apn_hidden: int = 512, **cfg: Any) -> None:
        super().__init__(num_classes, **cfg)
        hp = self.hp
        self.backbone_passes = hp.scales
        n_backbones = 1 if hp.share_backbone else hp.scales
        self.backbones = nn.ModuleList(self.new_backbone() for _ in range(n_backbones))
        first = self.backbones[0]
        head_dim = int(getattr(first, "head_hidden_size", None) or first.num_features)
        info = getattr(first, "feature_info", None)
        channels = int(info[-1]["num_chs"]) if info else int(first.num_features)
        self.heads = nn.ModuleList(self.new_classifier(head_dim) for _ in range(hp.scales))
        self.apns = nn.ModuleList(APN(channels, apn_grid, apn_hidden) for _ in range(hp.scales - 1))
        # the fusion classifier on the concatenated normalised descriptors (test_logits "fused" only)
        self.fusion = self.new_classifier(head_dim * hp.scales) if hp.test_logits == "fused" else None
        self.epoch = 0
        self.phase = self.phase_for_epoch(0)

    # ------------------------------------------------------------------ phases
    def phase_for_epoch(self, epoch: int) -> str:
        """"pretrain" for the first ``apn_pretrain_epochs``, then cls/apn blocks of ``alternation_period``."""
        if epoch < self.hp.apn_pretrain_epochs:
            return "pretrain"
        block = (epoch - self.hp.apn_pretrain_epochs) // self.hp.alternation_period
        return "cls" if block % 2 == 0 else "apn"

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.phase = self.phase_for_epoch(self.epoch)

    def set_phase(self, phase: str) -> None:
        """Force a phase (tests, custom schedules); the next ``on_epoch_start`` overrides it."""
        if phase not in PHASES:
            raise ValueError(f"racnn phase must be one of {PHASES}, got {phase!r}")
        self.phase = phase

    # ----------------------------------------------------------------- forward
    def _backbone(self, scale: int) -> nn.Module:
        return self.backbones[0 if len(self.backbones) == 1 else scale]

    def _crop(self, images: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        if self.hp.crop_mode == "boxcar":
            return boxcar_crop_and_zoom(images, box, self.hp.boxcar_k)
        return crop_and_zoom(images, box)

    def forward_scales(
        self, images: torch.Tensor, phase: str = "cls", backbone_grad: bool = True, last_scale: bool = True
    ) -> ScalePass:
        """Run every scale. In phase "apn" the boxes carry gradient and the
        backbones/heads are fixed; otherwise the boxes are detached.
        ``last_scale=False`` stops after the last box (APN pretraining needs no more)."""
        train_apn = phase == "apn"
        dtype = torch.promote_types(images.dtype, torch.float32)
        # built on the device (no host-to-device copy inside the step)
        box_abs = torch.stack([images.new_full((images.shape[0],), v, dtype=dtype) for v in FULL_IMAGE], dim=1)
        x = images
        out = ScalePass([], [], [], [], [], [])
        for s in range(self.hp.scales if last_scale else self.hp.scales - 1):
            bb, head = self._backbone(s), self.heads[s]
            if not backbone_grad or (train_apn and s == 0):
                ctx = torch.no_grad()  # nothing upstream needs a gradient
            elif train_apn:
                ctx = _params_excluded_from_autograd([bb, head])
            else:
                ctx = nullcontext()
            with ctx:
                feat = bb.forward_features(x)
                pooled = bb.forward_head(feat, pre_logits=True)
                logits = head(self.dropout(pooled))
            out.inputs.append(x)
            out.feats.append(feat)
            out.pooled.append(pooled)
            out.logits.append(logits)
            if s == self.hp.scales - 1:
                break
            raw = self.apns[s](feat if train_apn else feat.detach()).to(dtype)
            box = constrain_box(raw, self.hp.min_tl_frac)
            box_abs = compose_boxes(box_abs, box if train_apn else box.detach())
            out.boxes.append(box)
            out.abs_boxes.append(box_abs)
            x = self._crop(images, box_abs)
        if not last_scale:
            out.inputs.append(x)
        return out

    def fused_logits(self, sp: ScalePass) -> torch.Tensor:
        """The fusion classifier on [normalise(pooled_1), ..., normalise(pooled_S)]."""
        if self.fusion is None:
            raise ValueError("racnn: fused logits need test_logits='fused' (the fusion classifier is built only then)")
        desc = torch.cat([F.normalize(p, dim=1) for p in sp.pooled], dim=1)
        return self.fusion(self.dropout(desc))

    def _pretrain_loss(self, sp: ScalePass) -> torch.Tensor:
        tl = max(PRETRAIN_TL, 0.5 * self.hp.min_tl_frac)
        losses = []
        for feat, box in zip(sp.feats, sp.boxes):
            target = peak_box_targets(feat, tl).to(box.dtype)
            losses.append((box - target).pow(2).sum(dim=1).mean())
        return torch.stack(losses).sum()

    def apn_pretrain_loss(self, images: torch.Tensor) -> torch.Tensor:
        """APN regression onto the feature-peak boxes; gradient reaches the APNs only."""
        return self._pretrain_loss(self.forward_scales(images, "pretrain", backbone_grad=False, last_scale=False))

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        sp = self.forward_scales(images, self.phase)
        ce = [F.cross_entropy(lg, labels) for lg in sp.logits]
        rank = torch.stack([
            ranking_loss(sp.logits[s], sp.logits[s + 1], labels, self.hp.margin) for s in range(self.hp.scales - 1)
        ]).sum()
        branch = {f"ce{s + 1}": c.detach() for s, c in enumerate(ce)}
        branch["rank"] = rank.detach()
        if self.fusion is not None:  # in "apn" epochs only logged: the fusion classifier is fixed there
            with torch.no_grad() if self.phase == "apn" else nullcontext():
                ce.append(F.cross_entropy(self.fused_logits(sp), labels))
            branch["fused"] = ce[-1].detach()
        if self.phase == "apn":
            loss = rank
        else:
            loss = torch.stack(ce).sum()
            if self.phase == "pretrain":
                pre = self._pretrain_loss(sp)
                branch["apn_pretrain"] = pre.detach()
                loss = loss + pre
        extras = {"phase": self.phase, "boxes": [b.detach() for b in sp.abs_boxes]}
        return StepOutput(loss=loss, branch_losses=branch, logits=sp.logits[0].detach(), extras=extras)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        sp = self.forward_scales(images, "cls")
        if self.hp.test_logits == "fused":
            return self.fused_logits(sp)
        logits = sp.logits
        if self.hp.test_logits == "sum":
            return torch.stack(logits).sum(dim=0)
        return logits[int(self.hp.test_logits[len("scale"):]) - 1]

    @torch.no_grad()
    def visualize(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The zoomed input of every finer scale, min-max scaled per image."""
        sp = self.forward_scales(images, "cls")
        shown = {}
        for s, x in enumerate(sp.inputs[1:], start=2):
            shown[f"scale{s}"] = to_unit_range(x.float())
        return shown

    # -------------------------------------------------------------- optimiser
    def param_groups(self, weight_decay: float, lr: float | None = None) -> list[dict[str, Any]]:
        """Backbone+heads and APN groups, each split into decay / no-decay (1-d params).

        APN groups carry ``lr_scale = apn_lr_mult`` (applied by timm schedulers);
        with ``lr`` given they carry the absolute ``"lr": lr * apn_lr_mult`` instead.
        """
        apn_ids = {id(p) for p in self.apns.parameters()}
        buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for p in self.parameters():
            buckets.setdefault((id(p) in apn_ids, p.ndim > 1), []).append(p)
        groups: list[dict[str, Any]] = []
        for (is_apn, decay), params in sorted(buckets.items()):
            group: dict[str, Any] = {"params": params, "weight_decay": weight_decay if decay else 0.0}
            if is_apn:
                if lr is None:
                    group["lr_scale"] = self.hp.apn_lr_mult
                else:
                    group["lr"] = lr * self.hp.apn_lr_mult
            groups.append(group)
        return groups
