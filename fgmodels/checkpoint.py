"""A run folder's layout and its checkpoint files: atomic writes, safe loads.

Everything saved is tensors and plain Python containers so that loading works
with ``torch.load(weights_only=True)``: a checkpoint from someone else cannot
run code on this machine.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoint"  # <workdir>/checkpoint: the state after the last completed epoch (resume)
BEST_DIR = "best"  # <workdir>/best: the weights of the epoch with the best val_acc
METRICS_FILE = "metrics.jsonl"  # <workdir>/metrics.jsonl: one line of metrics per completed epoch


def save_state(state: dict[str, Any], directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, target)  # a crash mid-save never leaves a half-written checkpoint
    return target


def copy_state(source: str | Path, directory: str | Path) -> Path:
    """Copy a checkpoint file into ``directory`` (atomically, like ``save_state``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.{os.getpid()}.tmp"
    shutil.copyfile(Path(source) / STATE_FILE, tmp)
    os.replace(tmp, target)
    return target


def load_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: expected a {STATE_FILE} written by fgmodels.engine.fit")
    return torch.load(path, map_location=map_location, weights_only=True)
