"""Device, precision, seeding and batch plumbing shared by training, evaluation,
the memory estimate and the benchmarks: each rule is written here once."""
from __future__ import annotations

import logging
import random
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available here. Fix: use device=cpu or auto.")
    return device


def uses_bf16(cfg: dict[str, Any], device_type: str) -> bool:
    """``amp: auto`` means bf16 autocast on CUDA only (CPU bf16 is slower than fp32);
    a trial's config has it decided already (:mod:`fgmodels.auto`)."""
    return cfg["amp"] == "bf16" or (cfg["amp"] == "auto" and device_type == "cuda")


def switched_on(cfg: dict[str, Any], key: str) -> bool:
    """A true/false runtime key; an undecided ``auto`` counts as off. Trials get
    every ``auto`` decided by the assembly; this covers configs that never pass
    through it (unit tests, the memory probe)."""
    return cfg.get(key) is True


def loader_workers(cfg: dict[str, Any]) -> int:
    """DataLoader workers; an undecided ``auto`` means none (see :func:`switched_on`)."""
    return 0 if cfg.get("workers", 0) == "auto" else int(cfg["workers"])


def autocast_for(cfg: dict[str, Any], device: torch.device) -> AbstractContextManager:
    if not uses_bf16(cfg, device.type):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def micro_batch_size(batch_size: int, accum_steps: int) -> int:
    """Images per forward pass when ``batch_size`` is split over ``accum_steps``."""
    return max(1, int(batch_size) // int(accum_steps))


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed Python, NumPy and torch from ``(seed, epoch)``: every epoch starts from
    a known RNG state, which is what makes a resumed run replay exactly."""
    value = (int(seed) * 100_003 + int(epoch)) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def make_loader(dataset: Dataset, batch_size: int, train: bool, cfg: dict[str, Any],
                device: torch.device, generator: torch.Generator | None = None) -> DataLoader:
    """Batches of ``(images, labels)``; with ``pipeline: cache`` they come already on ``device``."""
    if cfg["pipeline"] == "cache":
        from fgmodels.data.gpu_augment import make_device_loader

        return make_device_loader(dataset, batch_size, train, cfg, device, generator)
    workers = loader_workers(cfg)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) % batch_size == 1,  # only a lone last image: a batch of 1 breaks BatchNorm
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=generator,
    )


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
              cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=True)
    if switched_on(cfg, "channels_last"):
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def attach_pixel_cache(data: Any, cfg: dict[str, Any]) -> None:
    """With ``pipeline: cache``, one shared uint8 cache for all splits, built on first use."""
    if cfg["pipeline"] == "cache":
        from fgmodels.data.gpu_augment import attach_pixel_cache as attach

        attach(data, cfg)


def compile_backbones(model: nn.Module) -> int:
    """``torch.compile`` the backbone(s) of a method in place; returns how many.

    Methods call ``backbone.forward_features`` / ``forward_head`` directly, which
    a ``torch.compile(module)`` wrapper would skip, and the wrapper would also
    rename every checkpoint key (``_orig_mod.``). So the bound methods are
    replaced on the instance instead: weights, keys and ``.backbone`` stay as
    they are. Looks at ``model.backbone`` and ``model.backbones`` (RA-CNN).
    """
    # Grad-CAM (gholm) backpropagates through the backbone graph twice (retain_graph=True);
    # AOTAutograd's donated buffers forbid that, at a small memory saving only
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False
    found = [getattr(model, "backbone", None)]
    found += list(getattr(model, "backbones", None) or [])
    count = 0
    for backbone in (b for b in found if isinstance(b, nn.Module)):
        names = [n for n in ("forward_features", "forward_head") if callable(getattr(backbone, n, None))]
        for name in names or ["forward"]:  # e.g. timm's features_only wrappers have only forward
            setattr(backbone, name, torch.compile(getattr(backbone, name)))
        count += 1
    if count == 0:
        log.warning("compile: %s has no `backbone`/`backbones` attribute; nothing was compiled", type(model).__name__)
    return count
