"""Accuracy of a method on a split: during training (validation) and afterwards
from saved weights (the search's single look at the test split)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from fgmodels.assembly import build_model, read_splits
from fgmodels.checkpoint import load_state
from fgmodels.config import resolve_config
from fgmodels.runtime import attach_pixel_cache, autocast_for, make_loader, pick_device, to_device


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, cfg: dict[str, Any],
             max_batches: int | None = None) -> dict[str, float]:
    """Accuracy and CE of ``model.predict`` over ``loader``; one host sync per pass."""
    model.eval()
    correct = torch.zeros((), device=device)
    loss_sum = torch.zeros((), device=device)
    seen = 0
    with torch.no_grad():
        for i, (images, labels) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            images, labels = to_device(images, labels, device, cfg)
            with autocast_for(cfg, device):
                logits = model.predict(images)
            logits = logits.detach().float()
            correct += (logits.argmax(1) == labels).sum()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
            seen += labels.numel()
    if seen == 0:
        raise ValueError("evaluation loader is empty: the split has no images. Fix: check the dataset's split files.")
    return {"acc": float(correct) / seen, "loss": float(loss_sum) / seen, "n": seen}


def evaluate_checkpoint(checkpoint_dir: str | Path, cfg: dict[str, Any], split: str = "test") -> dict[str, float]:
    """Evaluate saved weights on a split; the search calls this ONCE on the test
    split for the chosen configuration."""
    from fgmodels.auto import AUTO_KEYS, resolve_for_trial

    # The runtime keys a trial decided for its own device (bf16 on its GPU, say) are
    # decided again for the device that evaluates; one pass: compiling would not pay.
    cfg = resolve_config({**cfg, **{k: "auto" for k in AUTO_KEYS}, "compile": False})
    device = pick_device(cfg["device"])
    data = read_splits(cfg)
    cfg, _ = resolve_for_trial(cfg, device, data)
    attach_pixel_cache(data, cfg)
    model = build_model(cfg, data.num_classes, device)
    model.load_state_dict(load_state(checkpoint_dir, map_location=device)["model"])
    dataset = {"test": data.test, "val": data.val}[split]
    loader = make_loader(dataset, int(cfg["batch_size"]), False, cfg, device)
    return evaluate(model, loader, device, cfg)
