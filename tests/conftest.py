"""Shared test setup: small, deterministic and CPU-only."""
from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest
import torch

# One intra-op thread: the tests use tiny models, for which a second thread only
# adds spin-waiting (measured ~20x slower on a loaded 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
