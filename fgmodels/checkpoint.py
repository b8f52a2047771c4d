"""Checkpoint files: atomic writes, safe loads.

Everything saved is tensors and plain Python containers so that loading works
with ``torch.load(weights_only=True)``: a checkpoint from someone else cannot
run code on this machine.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"


def save_state(state: dict[str, Any], directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, target)  # a crash mid-save never leaves a half-written checkpoint
    return target


def load_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: expected a {STATE_FILE} written by fgmodels.engine.fit")
    return torch.load(path, map_location=map_location, weights_only=True)
