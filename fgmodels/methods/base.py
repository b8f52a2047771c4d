"""The small interface every method offers to the one training loop.

A method owns its branches, its losses and its test-time logits; the training
loop owns data, optimisation, checkpoints and metrics. Nothing else crosses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from fgmodels.backbones import create_backbone
from fgmodels.config import TRAIN_KNOBS
from fgmodels.knobs import KnobSet

# The training keys every method is built from (besides its own knobs).
BACKBONE_KEYS: tuple[str, ...] = ("backbone", "pretrained", "checkpoint_path", "pretrained_tag", "drop_rate")


@dataclass
class NoKnobs(KnobSet):
    """A method without knobs of its own."""


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
    """Base class: subclasses set ``name`` and ``Knobs`` and implement the two steps.

    ``Knobs`` (a :class:`~fgmodels.knobs.KnobSet` dataclass) declares the
    method's own config keys once: their defaults (``hparams`` is derived from
    it), kinds, ranges and cross-knob rules. The constructor checks the values
    against it and keeps them as ``self.hp``; the config validator, the search
    spaces and :func:`fgmodels.registry.create_method` read the same declaration.

    The shared backbone options (``backbone``, ``pretrained``, ``checkpoint_path``,
    ``pretrained_tag``, ``drop_rate``) are handled here once: :meth:`new_backbone` builds a timm
    backbone from them, :meth:`new_classifier` a linear head, ``self.dropout``
    is the dropout before the head(s).

    ``default_backbone`` is the paper's backbone; ``test_backbone`` a tiny timm
    model the method accepts (tests, CPU benchmarks). ``backbone_passes`` is how
    many backbone forwards one training image costs (the speed benchmark
    compares against a plain single-pass model); an instance may refine it.
    """

    name: ClassVar[str] = ""
    Knobs: ClassVar[type[KnobSet]] = NoKnobs
    hparams: ClassVar[dict[str, Any]] = {}
    backbone_passes: ClassVar[int] = 1
    dynamic_shapes: ClassVar[bool] = False  # True: data-dependent shapes in a step, so `compile: auto` stays off
    default_backbone: ClassVar[str] = "resnet50"
    test_backbone: ClassVar[str] = "test_convnext"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "hparams" in cls.__dict__:
            raise TypeError(
                f"{cls.__qualname__} sets `hparams`; it is derived from the knob declaration. "
                f"Fix: declare the knobs in a KnobSet dataclass and set `Knobs = ThatClass`."
            )
        cls.hparams = cls.Knobs.defaults()

    def __init__(self, num_classes: int, **cfg: Any) -> None:
        """``cfg``: the backbone options and the method's knobs (unknown keys are refused)."""
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"{self.name} needs num_classes >= 2 (an integer), got {num_classes!r}")
        self.num_classes = int(num_classes)
        shared = {k: cfg.pop(k) for k in BACKBONE_KEYS if k in cfg}
        if shared.get("backbone") is None:
            shared["backbone"] = self.default_backbone
        for key, value in shared.items():
            shared[key] = TRAIN_KNOBS[key].check(value, key)
        self.backbone_name: str = shared["backbone"]
        self.pretrained: bool = shared.get("pretrained", TRAIN_KNOBS["pretrained"].default)
        self.checkpoint_path: str | None = shared.get("checkpoint_path")
        self.pretrained_tag: str | None = shared.get("pretrained_tag")
        self.hp = self.Knobs.build(cfg, owner=self.name)
        self.dropout = nn.Dropout(shared.get("drop_rate", TRAIN_KNOBS["drop_rate"].default))

    @classmethod
    def config_keys(cls) -> set[str]:
        """The config keys the constructor takes: backbone options and knobs."""
        return set(BACKBONE_KEYS) | set(cls.Knobs.declared())

    def new_backbone(self, **timm_kwargs: Any) -> nn.Module:
        """A fresh timm backbone (no classifier) from the shared options."""
        return create_backbone(self.backbone_name, self.pretrained, self.checkpoint_path, self.pretrained_tag,
                               **timm_kwargs)

    def new_classifier(self, in_features: int) -> nn.Linear:
        return nn.Linear(in_features, self.num_classes)

    # ------------------------------------------------------------ the contract
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
