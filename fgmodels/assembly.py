"""Assembling a trial before any training: config, device, data, model.

Everything that can be wrong with a trial's inputs (a bad config value, a
missing dataset folder, an out-of-range label, an unknown backbone) surfaces
here, as ``ConfigError`` or ``DatasetError``, before the loop spends a second
of compute; the CLI turns those into one line and exit status 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from fgmodels.config import resolve_config
from fgmodels.registry import create_method
from fgmodels.runtime import attach_pixel_cache, compile_backbones, pick_device, seed_everything, switched_on


@dataclass
class Trial:
    """The parts of one run that exist before its first step."""

    cfg: dict[str, Any]  # resolved: defaults + method knobs + the given values, no `auto` left
    device: torch.device
    data: Any  # fgmodels.data.DataBundle: train / val / test splits and class names
    model: nn.Module
    settings: str = ""  # the runtime settings decided for `auto` keys, and why (one line)


def build_model(cfg: dict[str, Any], num_classes: int, device: torch.device) -> nn.Module:
    """The method with freshly initialised weights, seeded from ``cfg["seed"]``, so
    building it twice (e.g. after an out-of-memory restart) gives the same weights."""
    seed_everything(cfg["seed"])
    model = create_method(cfg["method"], num_classes, **cfg).to(device)
    if switched_on(cfg, "channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if switched_on(cfg, "compile"):
        compile_backbones(model)
    return model


def read_splits(cfg: dict[str, Any]) -> Any:
    """The dataset splits of a resolved config (no pixel cache yet)."""
    from fgmodels.data import build_datasets

    return build_datasets(cfg)


def load_data(cfg: dict[str, Any]) -> Any:
    """The dataset splits of a resolved config, with the pixel cache attached when used."""
    data = read_splits(cfg)
    attach_pixel_cache(data, cfg)
    return data


def assemble_trial(cfg: dict[str, Any]) -> Trial:
    """Resolve ``cfg``, decide its ``auto`` runtime keys for this device, CPUs and
    dataset (before the caller saves the config), and build the data and model of one run."""
    from fgmodels.auto import resolve_for_trial

    cfg = resolve_config(cfg)
    device = pick_device(cfg["device"])
    seed_everything(cfg["seed"])
    data = read_splits(cfg)
    cfg, decided = resolve_for_trial(cfg, device, data)
    print(decided.line(), flush=True)  # the trial's first log line: what it runs with
    attach_pixel_cache(data, cfg)
    return Trial(cfg, device, data, build_model(cfg, data.num_classes, device), decided.line())
